//! Builds the whole plugins workspace (`plugins/`: the examples and the test fixtures) for
//! `wasm32-wasip2`, and tells the test support where the components are
//! (`FIXTURES_DIR` in the generated `fixtures.rs`).
//!
//! `STORMHOOK_SKIP_PLUGINS=1` skips the build; the tests that need a component then fail with
//! a message saying so.

use std::fs;

#[path = "../host/app/build/wasm_plugins.rs"]
mod wasm_plugins;

fn main() {
    let (root, out) = wasm_plugins::setup(
        "..",
        &[
            "plugins/Cargo.toml",
            "plugins/Cargo.lock",
            "plugins/sdk",
            "plugins/examples",
            "plugins/testing",
            "wit",
            "host/app/build/wasm_plugins.rs",
        ],
    );
    let code = if wasm_plugins::skipped() {
        "/// Plugins were not built (STORMHOOK_SKIP_PLUGINS).\npub const FIXTURES_DIR: Option<&str> = None;\n".to_owned()
    } else {
        let dir = wasm_plugins::build_plugins(&root, &out, &[]);
        format!(
            "/// Where this build put the plugin components (examples and test fixtures).\npub const FIXTURES_DIR: Option<&str> = Some({:?});\n",
            dir.display().to_string()
        )
    };
    fs::write(out.join("fixtures.rs"), code).expect("OUT_DIR is writable");
}
