//! Builds the plugins workspace (`plugins/`) for `wasm32-wasip2` and embeds the example packs,
//! with their components, into the binary.
//!
//! - Fetches the `wasm32-wasip2` target with rustup when it is missing, so a fresh machine with
//!   only the Rust toolchain can build.
//! - Builds in release mode into `<target>/wasm-plugins`, shared by debug and release host builds.
//! - `STORMHOOK_SKIP_PLUGINS=1` skips all of it: the binary then carries no example packs.
//!
//! The generated `examples.rs` holds the example pack files and the path of the built
//! components (tests use the fixtures from there).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .join("../..")
        .canonicalize()
        .expect("the repository root exists");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in [
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/sdk",
        "plugins/examples",
        "plugins/testing",
        "wit",
        "examples",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=STORMHOOK_SKIP_PLUGINS");

    let wasm_dir = if env::var_os("STORMHOOK_SKIP_PLUGINS").is_some_and(|v| v != "0") {
        println!(
            "cargo:warning=STORMHOOK_SKIP_PLUGINS is set: plugins not built, no example packs embedded"
        );
        None
    } else {
        Some(build_plugins(&root, &out))
    };
    let code = generate(&root.join("examples"), wasm_dir.as_deref());
    fs::write(out.join("examples.rs"), code).expect("OUT_DIR is writable");
}

fn build_plugins(root: &Path, out: &Path) -> PathBuf {
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
fn ensure_wasm_target() {
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

/// Generates `EXAMPLE_FILES` (relative path, bytes) and `BUILT_PLUGINS_DIR`.
fn generate(examples: &Path, wasm_dir: Option<&Path>) -> String {
    let mut files = Vec::new();
    if let Some(wasm_dir) = wasm_dir {
        collect(examples, examples, wasm_dir, &mut files);
    }
    files.sort();
    let mut code = String::from(
        "/// Files of the example packs: path relative to the packs folder, and contents.\n",
    );
    code.push_str("pub static EXAMPLE_FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    match wasm_dir {
        Some(dir) => writeln!(
            code,
            "/// Where this build put the plugin components (examples and test fixtures).\npub const BUILT_PLUGINS_DIR: Option<&str> = Some({:?});",
            dir.display().to_string()
        )
        .unwrap(),
        None => code.push_str("/// Plugins were not built (STORMHOOK_SKIP_PLUGINS).\npub const BUILT_PLUGINS_DIR: Option<&str> = None;\n"),
    }
    code
}

/// Collects pack files, and for every `entry_point: <file>.wasm` in a YAML file the built
/// component of that name, placed next to the YAML file.
fn collect(base: &Path, dir: &Path, wasm_dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(base, &path, wasm_dir, files);
            continue;
        }
        let rel = path
            .strip_prefix(base)
            .expect("under base")
            .to_string_lossy()
            .replace('\\', "/");
        let is_yaml = rel.ends_with(".yaml") || rel.ends_with(".yml");
        if path.extension().is_some_and(|e| e == "wasm") {
            continue; // Components come from the plugin build, never from the source tree.
        }
        files.push((rel.clone(), path.clone()));
        if !is_yaml {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines() {
            let Some(name) = line.trim().strip_prefix("entry_point:") else {
                continue;
            };
            let name = name.trim().trim_matches(['"', '\'']);
            if !name.ends_with(".wasm") {
                continue;
            }
            let built = wasm_dir.join(name);
            if !built.exists() {
                panic!(
                    "{} names entry_point {name}, but the plugin build made no {}",
                    path.display(),
                    built.display()
                );
            }
            let folder = rel.rsplit_once('/').map_or("", |(f, _)| f);
            let target = if folder.is_empty() {
                name.to_owned()
            } else {
                format!("{folder}/{name}")
            };
            if !files.iter().any(|(r, _)| *r == target) {
                files.push((target, built));
            }
        }
    }
}
