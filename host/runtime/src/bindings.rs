//! The host side of the WIT contract.
//!
//! Two worlds share one package: `rule` generates the shared interfaces (`types`, `log`, `kv`),
//! and `action` reuses them through `with`, so there is one Rust type per WIT type.

pub(crate) mod rule {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "rule",
        imports: { default: async },
        exports: { default: async },
    });
}

pub(crate) mod action {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "action",
        imports: { default: async },
        exports: { default: async },
        with: {
            "stormhook:plugin/types": super::rule::stormhook::plugin::types,
            "stormhook:plugin/log": super::rule::stormhook::plugin::log,
            "stormhook:plugin/kv": super::rule::stormhook::plugin::kv,
        },
    });
}

pub(crate) use rule::stormhook::plugin::{kv, log, types};
