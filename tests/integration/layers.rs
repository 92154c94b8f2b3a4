//! The layers the crate boundaries promise (ARCHITECTURE.md): the automation domain knows no
//! HTTP server, TLS server or command line; the server knows no command line; and inside the
//! runtime and the automation crates the modules import each other without a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The package names in `cargo tree -p <package> -e normal` (to `depth`, when given).
fn dependencies(package: &str, depth: Option<u32>) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root()).args([
        "tree",
        "--offline",
        "-p",
        package,
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]);
    if let Some(depth) = depth {
        cmd.args(["--depth", &depth.to_string()]);
    }
    let out = cmd.output().expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_automation_domain_depends_on_no_http_server_tls_server_or_command_line() {
    let all = dependencies("stormhook-automation", None);
    for name in ["axum", "clap", "stormhook-server", "stormhook"] {
        assert!(
            !all.contains(name),
            "stormhook-automation depends on {name}"
        );
    }
    // Its one HTTP client (core.http's reqwest) brings hyper in as a client; the crate itself
    // names no server, TLS or middleware crate.
    let direct = dependencies("stormhook-automation", Some(1));
    assert!(direct.contains("stormhook-runtime"), "{direct:?}");
    for name in [
        "hyper",
        "hyper-util",
        "rustls",
        "tokio-rustls",
        "tower",
        "http-body",
    ] {
        assert!(
            !direct.contains(name),
            "stormhook-automation depends on {name} directly"
        );
    }
}

#[test]
fn the_server_depends_on_no_command_line_and_the_leaf_crates_on_no_domain() {
    let server = dependencies("stormhook-server", None);
    assert!(server.contains("axum"), "{server:?}");
    for name in ["clap", "stormhook"] {
        assert!(!server.contains(name), "stormhook-server depends on {name}");
    }
    for leaf in [
        "stormhook-runtime",
        "stormhook-rules",
        "stormhook-packs",
        "stormhook-senders",
        "stormhook-storage",
    ] {
        let deps = dependencies(leaf, None);
        for name in ["stormhook-automation", "stormhook-server", "axum", "clap"] {
            assert!(!deps.contains(name), "{leaf} depends on {name}");
        }
    }
    // The senders' checks are pure functions: no IO crate below them, no other crate of ours.
    let senders = dependencies("stormhook-senders", None);
    for name in [
        "tokio",
        "sqlx",
        "reqwest",
        "hyper",
        "stormhook-storage",
        "stormhook-packs",
    ] {
        assert!(
            !senders.contains(name),
            "stormhook-senders depends on {name}"
        );
    }
    let runtime = dependencies("stormhook-runtime", Some(1));
    for name in ["stormhook-storage", "stormhook-rules", "stormhook-packs"] {
        assert!(
            !runtime.contains(name),
            "stormhook-runtime depends on {name}"
        );
    }
}

/// The top-level module of each `crate::<module>` path in the crate's source files, per
/// top-level module (files under `src/<module>/` belong to `<module>`; `lib.rs` is left out).
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let mut code = String::new();
        // Comments and doc links are not imports.
        for line in text.lines() {
            let line = line.split("//").next().unwrap_or_default();
            code.push_str(line);
            code.push('\n');
        }
        let uses = graph.entry(module.clone()).or_default();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` groups and re-exports at the root are not module edges.
            if !name.is_empty()
                && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && name != module
            {
                uses.insert(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_of_the_runtime_and_the_automation_crates_have_no_cycle() {
    for krate in ["host/runtime/src", "host/automation/src"] {
        let graph = module_imports(&root().join(krate));
        assert!(graph.len() > 5, "{krate}: {graph:?}");
        let edges: usize = graph.values().map(BTreeSet::len).sum();
        assert!(edges > 5, "{krate}: no imports found: {graph:?}");
        if let Some(found) = cycle(&graph) {
            panic!(
                "{krate}: modules import each other in a cycle: {}",
                found.join(" -> ")
            );
        }
    }
}

#[test]
fn the_import_graph_sees_the_imports() {
    let graph = module_imports(&root().join("host/automation/src"));
    assert!(graph["app"].contains("engine"), "{graph:?}");
    assert!(graph["engine"].contains("executions"), "{graph:?}");
    assert!(graph["actions"].contains("packs"), "{graph:?}");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}
