//! Builds the example plugins (`plugins/examples/`) for `wasm32-wasip2` and embeds the example
//! packs, with their components, into the binary. The test fixtures are built by the test
//! crate's build script (`tests/build.rs`), not here: the binary builds only what it ships.
//!
//! `STORMHOOK_SKIP_PLUGINS=1` skips all of it: the binary then carries no example packs.
//!
//! The generated `examples.rs` holds the example pack files.

#[path = "build/wasm_plugins.rs"]
mod wasm_plugins;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let (root, out) = wasm_plugins::setup(
        "../..",
        &[
            "plugins/Cargo.toml",
            "plugins/Cargo.lock",
            "plugins/sdk",
            "plugins/examples",
            "wit",
            "examples",
            "host/app/build/wasm_plugins.rs",
        ],
    );

    let wasm_dir = if wasm_plugins::skipped() {
        println!(
            "cargo:warning=STORMHOOK_SKIP_PLUGINS is set: plugins not built, no example packs embedded"
        );
        None
    } else {
        let packages = example_packages(&root.join("plugins/examples"));
        let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
        Some(wasm_plugins::build_plugins(&root, &out, &packages))
    };
    let code = generate(&root.join("examples"), wasm_dir.as_deref());
    fs::write(out.join("examples.rs"), code).expect("OUT_DIR is writable");
}

/// The package names of the example plugins: one folder each under `plugins/examples`, named
/// as its package.
fn example_packages(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("plugins/examples exists")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Generates `EXAMPLE_FILES` (relative path, bytes).
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
