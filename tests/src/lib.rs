//! Test support for Stormhook: where the built plugins are, a shared compile cache, runtimes and
//! pack folders set up the same way in every test.
//!
//! Fixture components are built once per build by `host/app/build.rs` (the whole `plugins/`
//! workspace, in release mode) and compiled by wasmtime once per run at most: every runtime made
//! here shares one on-disk cache of precompiled code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stormhook_runtime::datastore::MemoryDatastore;
use stormhook_runtime::{PluginKind, PluginSpec, Runtime, RuntimeConfig};

/// The folder holding every built component (`<name>.wasm`).
///
/// # Panics
///
/// When the host was built with `STORMHOOK_SKIP_PLUGINS` (there are no components to test).
pub fn plugins_dir() -> PathBuf {
    let dir = stormhook::examples::BUILT_PLUGINS_DIR
        .expect("the tests need the plugins: build without STORMHOOK_SKIP_PLUGINS");
    PathBuf::from(dir)
}

/// The built component `<name>.wasm`.
pub fn component(name: &str) -> PathBuf {
    let path = plugins_dir().join(format!("{name}.wasm"));
    assert!(path.exists(), "no built component {}", path.display());
    path
}

/// The compile cache shared by all tests of this build.
pub fn cache_dir() -> PathBuf {
    plugins_dir().join("../../../stormhook-test-cache")
}

/// A runtime configured like the server's, with the shared cache and an in-memory datastore.
pub fn runtime(config: RuntimeConfig) -> Arc<Runtime> {
    let config = RuntimeConfig {
        cache_dir: Some(cache_dir()),
        max_instances: config.max_instances.min(64),
        ..config
    };
    Arc::new(Runtime::new(config, Arc::new(MemoryDatastore::default())).expect("runtime starts"))
}

/// Loads fixture `<name>.wasm` as `test.<name>` of the given kind.
pub async fn load_fixture(runtime: &Arc<Runtime>, name: &str, kind: PluginKind) -> String {
    let reference = format!("test.{name}");
    runtime
        .load(PluginSpec::new(reference.clone(), kind, component(name)))
        .await
        .unwrap_or_else(|e| panic!("loading fixture {name}: {e}"));
    reference
}

/// Copies the example packs, with their built components, into `dest`.
pub fn install_examples(dest: &Path) {
    let written = stormhook::examples::install(dest).expect("installing the example packs");
    assert!(written > 0, "the binary embeds no example packs");
}
