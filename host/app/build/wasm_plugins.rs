//! Building the plugins workspace (`plugins/`) for `wasm32-wasip2` from a build script: shared
//! by the binary's build script (the example plugins it embeds) and the test crate's (the test
//! fixtures), through `#[path]`.
//!
//! - Fetches the `wasm32-wasip2` target with rustup when it is missing, so a fresh machine with
//!   only the Rust toolchain can build.
//! - Builds in release mode into `<target>/wasm-plugins`, shared by debug and release host
//!   builds and by both build scripts.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (`levels` folders above the package) and the build script's `OUT_DIR`;
/// asks cargo to run the script again when `watched` (paths from the root) or
/// `STORMHOOK_SKIP_PLUGINS` change.
pub(crate) fn setup(levels: &str, watched: &[&str]) -> (PathBuf, PathBuf) {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .join(levels)
        .canonicalize()
        .expect("the repository root exists");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for path in watched {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=STORMHOOK_SKIP_PLUGINS");
    (root, out)
}

/// Whether `STORMHOOK_SKIP_PLUGINS` asks to build no plugins.
pub(crate) fn skipped() -> bool {
    env::var_os("STORMHOOK_SKIP_PLUGINS").is_some_and(|v| v != "0")
}

/// Builds `packages` of the plugins workspace (all of it when empty) for `wasm32-wasip2`, in
/// release mode, into `<target>/wasm-plugins`; returns the folder holding the components.
pub(crate) fn build_plugins(root: &Path, out: &Path, packages: &[&str]) -> PathBuf {
    ensure_wasm_target();
    // `<target>/<profile>/build/<pkg>/out` -> `<target>`: share one plugin build per target dir.
    let target_dir = out
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent()?.parent())
        .map(|t| t.join("wasm-plugins"))
        .unwrap_or_else(|| out.join("wasm-plugins"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(root.join("plugins/Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // The host build's flags and target settings must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        if key.to_str().is_some_and(|k| {
            k.starts_with("CARGO_PROFILE_")
                || k.starts_with("CARGO_CFG_")
                || k.starts_with("CARGO_FEATURE_")
        }) {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().expect("running cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins workspace (plugins/) for wasm32-wasip2 failed; run \
             `cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml` to see why, \
             or set STORMHOOK_SKIP_PLUGINS=1 to build the host without them"
        );
    }
    target_dir.join("wasm32-wasip2/release")
}

/// Adds the `wasm32-wasip2` standard library with rustup when it is missing.
pub(crate) fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|dir| dir.join("libstd.rlib").exists() || has_std(&dir)) {
        return;
    }
    println!(
        "cargo:warning=installing the wasm32-wasip2 target with `rustup target add wasm32-wasip2`"
    );
    let added = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
    if !added.is_ok_and(|s| s.success()) {
        panic!(
            "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed; \
             install it by hand, or set STORMHOOK_SKIP_PLUGINS=1 to build the host without plugins"
        );
    }
}

fn has_std(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}
