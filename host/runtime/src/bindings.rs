//! The host side of the WIT contract.
//!
//! Two versions of the package are linked side by side: `stormhook:plugin@0.2.0` (the current
//! `wit/`) and `stormhook:plugin@0.1.0` (frozen in `wit/frozen/0.1.0/`), so components built
//! against 0.1.0 keep loading and running unchanged. In each version, `rule` generates the
//! shared interfaces and `action` reuses them through `with`, so there is one Rust type per
//! WIT type and version.

/// `stormhook:plugin@0.2.0`.
pub(crate) mod v2 {
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
                "stormhook:plugin/config": super::rule::stormhook::plugin::config,
            },
        });
    }

    pub(crate) mod responder {
        wasmtime::component::bindgen!({
            path: "../../wit",
            world: "responder",
            imports: { default: async },
            exports: { default: async },
            with: {
                "stormhook:plugin/types": super::rule::stormhook::plugin::types,
                "stormhook:plugin/log": super::rule::stormhook::plugin::log,
                "stormhook:plugin/config": super::rule::stormhook::plugin::config,
            },
        });
    }

    pub(crate) use action::stormhook::plugin::events;
    pub(crate) use rule::stormhook::plugin::{config, kv, log, types};
}

/// `stormhook:plugin@0.1.0`, as released.
pub(crate) mod v1 {
    pub(crate) mod rule {
        wasmtime::component::bindgen!({
            path: "../../wit/frozen/0.1.0",
            world: "rule",
            imports: { default: async },
            exports: { default: async },
        });
    }

    pub(crate) mod action {
        wasmtime::component::bindgen!({
            path: "../../wit/frozen/0.1.0",
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
}

pub(crate) use v2::{config, events, kv, log, types};

/// Which version of the package a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WitVersion {
    /// `stormhook:plugin@0.1.0`.
    V1,
    /// `stormhook:plugin@0.2.0`.
    V2,
}

impl WitVersion {
    /// The version named by the component's `stormhook:plugin/...` imports; the current one when
    /// it imports none (a world's exports always use `types`, so a real component names one).
    pub(crate) fn of(
        component: &wasmtime::component::Component,
        engine: &wasmtime::Engine,
    ) -> Self {
        let ty = component.component_type();
        for (name, _) in ty.imports(engine) {
            if let Some(rest) = name.strip_prefix("stormhook:plugin/")
                && rest.contains("@0.1.")
            {
                return Self::V1;
            }
        }
        Self::V2
    }

    /// `0.1.0` or `0.2.0`, as logs and the API show it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "0.1.0",
            Self::V2 => "0.2.0",
        }
    }
}
