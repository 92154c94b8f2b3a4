//! Builds the example plugins (`plugins/examples/`) for `wasm32-wasip2` and embeds the example
//! packs, with their components, into the binary. The test fixtures are built by the test
//! crate's build script (`tests/build.rs`), not here: the binary builds only what it ships.
//!
//! `STORMHOOK_SKIP_PLUGINS=1` skips all of it: the binary then carries no example packs.
//!
//! The generated `examples.rs` holds the example pack files, and `templates.rs` the files
//! `stormhook plugin new` writes (the plugin crate templates, the SDK's source and the WIT).

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
    fs::write(out.join("templates.rs"), generate_templates(&root)).expect("OUT_DIR is writable");
}

/// Generates the files `stormhook plugin new` writes (see `plugins/sdk/template/README.md`):
/// `COMMON`, `ACTION` and `RULE` (the template folders), `SDK` (`plugins/sdk/src/**` and its
/// README, as `src/...` and `README.md`) and `WIT` (`wit/*.wit`, not `wit/frozen/`), each a
/// list of (relative path, contents). Always embedded, `STORMHOOK_SKIP_PLUGINS` or not.
fn generate_templates(root: &Path) -> String {
    let template = root.join("plugins/sdk/template");
    let sdk = root.join("plugins/sdk");
    let mut sdk_files = Vec::new();
    walk(&sdk.join("src"), &sdk, &mut sdk_files);
    sdk_files.push(("README.md".to_owned(), sdk.join("README.md")));
    let wit_dir = root.join("wit");
    let mut wit_files: Vec<(String, PathBuf)> = fs::read_dir(&wit_dir)
        .expect("wit/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "wit"))
        .map(|p| {
            (
                p.strip_prefix(&wit_dir)
                    .expect("under wit/")
                    .to_string_lossy()
                    .into_owned(),
                p,
            )
        })
        .collect();
    wit_files.sort();
    let mut code = String::new();
    let mut list = |name: &str, doc: &str, mut files: Vec<(String, PathBuf)>| {
        files.sort();
        writeln!(code, "/// {doc}").unwrap();
        writeln!(code, "pub(crate) static {name}: &[(&str, &str)] = &[").unwrap();
        for (rel, abs) in &files {
            writeln!(
                code,
                "    ({rel:?}, include_str!({:?})),",
                abs.display().to_string()
            )
            .unwrap();
        }
        code.push_str("];\n");
    };
    for (name, folder) in [("COMMON", "common"), ("ACTION", "action"), ("RULE", "rule")] {
        let dir = template.join(folder);
        let mut files = Vec::new();
        walk(&dir, &dir, &mut files);
        list(name, &format!("`plugins/sdk/template/{folder}/**`."), files);
    }
    list(
        "SDK",
        "`plugins/sdk/src/**` and `plugins/sdk/README.md`.",
        sdk_files,
    );
    list("WIT", "`wit/*.wit`.", wit_files);
    code
}

/// Every file under `dir` (hidden ones included), as (path relative to `base`, path).
fn walk(dir: &Path, base: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, base, files);
        } else {
            let rel = path.strip_prefix(base).expect("under base");
            files.push((rel.to_string_lossy().replace('\\', "/"), path));
        }
    }
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
