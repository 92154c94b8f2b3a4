//! Plugin authoring outside the repository: `stormhook plugin run` on the test fixtures
//! (`plugins/testing`), and `stormhook plugin new` writing a crate that builds on its own and
//! runs.
//!
//! The fixtures are built here (the binary's build script builds only the examples), with the
//! same command and target folder as the test crate's build script (`<target>/wasm-plugins`),
//! so the two share one plugin build.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Output, run, stormhook};

/// `<target>` (the folder holding `debug/deps/<this test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("the test binary is in <target>/<profile>/deps")
        .to_path_buf()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Cargo for a build outside this workspace: none of this test run's cargo settings leak in.
fn clean_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let leaks = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTUP_TOOLCHAIN")
            || [
                "RUSTFLAGS",
                "RUSTC",
                "RUSTC_WRAPPER",
                "RUSTC_WORKSPACE_WRAPPER",
                "MAKEFLAGS",
                "MFLAGS",
            ]
            .contains(&&*key);
        if leaks {
            cmd.env_remove(&*key);
        }
    }
    cmd
}

/// The folder of the built fixture components (the whole `plugins/` workspace, built once per
/// test run).
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir().join("wasm-plugins");
        let out = clean_cargo()
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(repo_root().join("plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .output()
            .expect("running cargo");
        assert!(
            out.status.success(),
            "building plugins/ for wasm32-wasip2 failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("wasm32-wasip2/release")
    })
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(format!("{name}.wasm"))
}

fn plugin_run(args: &[&str]) -> Output {
    run(stormhook().args(["plugin", "run"]).args(args))
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(out.ok()).unwrap_or_else(|e| panic!("{e}: {out:#?}"))
}

#[test]
fn run_prints_the_result_on_stdout_and_the_logs_and_stdio_on_stderr() {
    let file = fixture("log_probe");
    let out = plugin_run(&[file.to_str().unwrap()]);
    assert_eq!(json(&out), serde_json::json!({"ok": true}));
    for line in [
        "log trace log_probe trace k=v",
        "log debug log_probe debug k=v",
        "log info  log_probe info k=v",
        "log warn  log_probe warn k=v",
        "log error log_probe error k=v",
        "stdout | stdout-line",
        "stderr | stderr-line",
    ] {
        assert!(
            out.stderr.lines().any(|l| l == line),
            "{line:?} in {out:#?}"
        );
    }
}

#[test]
fn run_passes_the_context_and_the_reference() {
    let file = fixture("context_probe");
    let out = plugin_run(&[file.to_str().unwrap(), "--ref", "mypack.probe"]);
    let context = json(&out);
    assert_eq!(context["action_ref"], "mypack.probe");
    assert_eq!(context["user"], "stanley");
    assert_eq!(context["depth"], 0);
    assert_eq!(context["rule_ref"], serde_json::Value::Null);
    let id = context["execution_id"].as_str().unwrap();
    assert!(
        id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let deadline = context["deadline_ms"].as_u64().unwrap();
    assert!(deadline > 50_000 && deadline <= 60_000, "{deadline}");

    // The file name gives the default reference; --timeout-ms the deadline.
    let out = plugin_run(&[
        file.to_str().unwrap(),
        "--timeout-ms",
        "3000",
        "--user",
        "ada",
    ]);
    let context = json(&out);
    assert_eq!(context["action_ref"], "local.context_probe");
    assert_eq!(context["user"], "ada");
    assert!(context["deadline_ms"].as_u64().unwrap() <= 3000);
}

#[test]
fn run_seeds_the_datastore_from_kv() {
    let file = fixture("kv_probe");
    let file = file.to_str().unwrap();
    let out = plugin_run(&[
        file,
        "--kv",
        "a.b=hello",
        "--params",
        r#"{"op":"get","key":"a.b"}"#,
    ]);
    assert_eq!(json(&out), serde_json::json!({"result": "hello"}));
    let out = plugin_run(&[file, "--params", r#"{"op":"get","key":"a.b"}"#]);
    assert_eq!(json(&out), serde_json::json!({"result": null}));
    // A secret is readable (the grant includes secrets) and masked in what is shown.
    let out = plugin_run(&[
        file,
        "--kv-secret",
        "token=s3cr3t-value",
        "--params",
        r#"{"op":"get","key":"token"}"#,
    ]);
    assert_eq!(json(&out), serde_json::json!({"result": "********"}));
}

#[test]
fn run_gives_the_config_to_the_config_import() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("config.schema.yaml");
    std::fs::write(
        &schema,
        "token:\n  type: string\n  secret: true\n  required: true\nusername:\n  type: string\n  default: stormhook\n",
    )
    .unwrap();
    let values = dir.path().join("slack.yaml");
    std::fs::write(&values, "token: xoxb-123456\n").unwrap();
    let file = fixture("config_probe");
    let file = file.to_str().unwrap();
    let values = values.to_str().unwrap();
    let schema = schema.to_str().unwrap();
    let config = |extra: &[&str]| json(&plugin_run(&[&[file, "--config", values], extra].concat()));
    assert_eq!(
        config(&["--ref", "slack.probe", "--params", r#"{"key":"token"}"#]),
        serde_json::json!({"all": {"token": "xoxb-123456"}, "value": "xoxb-123456"})
    );
    // With the schema: defaults filled in, the secret masked.
    assert_eq!(
        config(&["--ref", "slack.probe", "--config-schema", schema]),
        serde_json::json!({"all": {"token": "********", "username": "stormhook"}, "value": null})
    );
    // Without --config the pack has none.
    let out = plugin_run(&[file, "--ref", "slack.probe"]);
    assert_eq!(json(&out), serde_json::json!({"all": {}, "value": null}));
    // A values file that fails the schema is refused before running, naming file and key.
    std::fs::write(dir.path().join("bad.yaml"), "username: x\n").unwrap();
    let bad = dir.path().join("bad.yaml");
    let out = plugin_run(&[
        file,
        "--config",
        bad.to_str().unwrap(),
        "--config-schema",
        schema,
    ]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("bad.yaml") && out.stderr.contains("token"),
        "{out:#?}"
    );
}

#[test]
fn a_plugin_failure_is_exit_code_1_with_the_error_and_its_kind() {
    let file = fixture("guest_error");
    let out = plugin_run(&[file.to_str().unwrap(), "--params", r#"{"kind":"denied"}"#]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_eq!(out.stdout, "", "{out:#?}");
    assert!(
        out.stderr.lines().any(|l| l
            .starts_with("error (guest-error): plugin `local.guest_error` (version ")
            && l.ends_with("): denied error: fixture guest error: denied")),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("  the plugin's error: denied"),
        "{out:#?}"
    );

    let file = fixture("events_probe");
    let out = plugin_run(&[
        file.to_str().unwrap(),
        "--params",
        r#"{"emit":{"trigger":"core.x"}}"#,
    ]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("events are not available in plugin run"),
        "{out:#?}"
    );
}

#[test]
fn run_refuses_bad_input_with_exit_code_2_and_a_precise_message() {
    let file = fixture("kv_probe");
    let file = file.to_str().unwrap();
    let missing = "/nonexistent/missing.wasm";
    for (args, message) in [
        (
            &[file, "--params", "{op: get}"][..],
            "error: --params is not JSON: key must be a string at line 1 column 2",
        ),
        (
            &[file, "--params", "[1, 2]"][..],
            "--params must be a JSON object",
        ),
        (
            &[missing][..],
            "cannot read the component /nonexistent/missing.wasm: No such file",
        ),
        (
            &[file, "--kv", "novalue"][..],
            "--kv \"novalue\": expected KEY=VALUE",
        ),
        (
            &[file, "--ref", "nodot"][..],
            "--ref: invalid plugin reference \"nodot\"",
        ),
        (
            &[file, "--timeout-ms", "0"][..],
            "--timeout-ms must be at least 1",
        ),
    ] {
        let out = plugin_run(args);
        assert_eq!(out.code, Some(2), "{args:?}: {out:#?}");
        assert!(out.stderr.contains(message), "{args:?}: {out:#?}");
    }

    // A rule component is not an action.
    let rule = fixture("noop_rule");
    let out = plugin_run(&[rule.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("as an action `local.noop_rule`"),
        "{out:#?}"
    );
}

#[test]
fn run_evaluates_a_rule_component_on_a_payload() {
    let rule = fixture("noop_rule");
    let out = plugin_run(&[
        rule.to_str().unwrap(),
        "--kind",
        "rule",
        "--params",
        r#"{"a":1}"#,
    ]);
    assert_eq!(
        json(&out),
        serde_json::json!({"matched": true, "values": null})
    );
}

/// One HTTP/1.1 exchange on a local port: answers 200 `pong` and returns the request line.
fn one_http_exchange(listener: TcpListener) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = reader.into_inner();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong")
            .unwrap();
        request_line
    })
}

#[test]
fn run_shows_the_http_requests_the_action_made() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = one_http_exchange(listener);
    let file = fixture("http_probe");
    let url = format!("http://127.0.0.1:{port}/hook?token=abc");
    let params = serde_json::json!({"method": "POST", "url": url, "body": "ping"}).to_string();
    let allow = format!("http://127.0.0.1:{port}");
    let out = plugin_run(&[
        file.to_str().unwrap(),
        "--allow-outbound",
        &allow,
        "--params",
        &params,
    ]);
    let result = json(&out);
    assert_eq!(result["status"], 200, "{out:#?}");
    assert_eq!(result["body"], "pong");
    assert_eq!(server.join().unwrap(), "POST /hook?token=abc HTTP/1.1\r\n");
    let line = format!("http POST http://127.0.0.1:{port}/hook -> 200 (");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&line) && l.ends_with(" ms, 4 bytes sent, 4 bytes received)")),
        "{out:#?}"
    );

    // Without the grant the request is refused, and shown as refused.
    let out = plugin_run(&[file.to_str().unwrap(), "--params", &params]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.lines().any(|l| l.starts_with(&format!(
            "http POST http://127.0.0.1:{port}/hook -> failed: "
        ))),
        "{out:#?}"
    );
}

#[test]
fn new_refuses_bad_names_and_non_empty_folders() {
    let dir = tempfile::tempdir().unwrap();
    let new = |args: &[&str]| {
        run(stormhook()
            .current_dir(dir.path())
            .args(["plugin", "new"])
            .args(args))
    };
    let out = new(&["nodot", "--kind", "action"]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr
            .contains("invalid plugin reference \"nodot\": expected <pack>.<name>"),
        "{out:#?}"
    );
    let out = new(&["pack.9x", "--kind", "rule"]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr
            .contains("invalid plugin name \"9x\": it must start with a letter"),
        "{out:#?}"
    );
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/file"), "").unwrap();
    let out = new(&["pack.taken", "--kind", "action"]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("taken exists and is not empty"),
        "{out:#?}"
    );
    // The default folder is ./<name>; a rule crate is written too.
    let out = new(&["pack.my-rule", "--kind", "rule"]);
    let text = out.ok();
    assert!(
        text.contains("rule.yaml") && text.contains("cd my-rule && cargo build --release"),
        "{text}"
    );
    assert!(
        dir.path()
            .join("my-rule/vendor/stormhook-sdk/src/lib.rs")
            .is_file()
    );
    assert!(dir.path().join("my-rule/wit/worlds.wit").is_file());
}

/// The whole authoring loop: `plugin new` writes an action crate, it builds with plain
/// `cargo build --release` in its own folder (crates.io only; offline first, from cargo's
/// cache), and `plugin run` runs the component it made. Slow the first time (the guest
/// dependencies build for wasm); the target folder is kept under `<target>/plugin-authoring`.
#[test]
fn a_new_action_crate_builds_on_its_own_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("notify-ops");
    let out = run(stormhook()
        .args([
            "plugin",
            "new",
            "ops.notify-ops",
            "--kind",
            "action",
            "--dir",
        ])
        .arg(&crate_dir));
    let text = out.ok();
    let wasm = "target/wasm32-wasip2/release/notify_ops.wasm";
    assert!(
        text.contains("cargo build --release") && text.contains(wasm),
        "{text}"
    );
    assert!(
        text.contains("<data-dir>/packs/ops/actions/notify-ops.yaml"),
        "{text}"
    );

    let target = target_dir().join("plugin-authoring");
    let build = |offline: bool| {
        let mut cmd = clean_cargo();
        cmd.current_dir(&crate_dir)
            .args(["build", "--release"])
            .env("CARGO_TARGET_DIR", &target);
        if offline {
            cmd.arg("--offline");
        }
        cmd.output().expect("running cargo")
    };
    let mut out = build(true);
    if !out.status.success() {
        out = build(false);
    }
    assert!(
        out.status.success(),
        "cargo build --release in the new crate failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let component = target.join("wasm32-wasip2/release/notify_ops.wasm");
    let out = plugin_run(&[
        component.to_str().unwrap(),
        "--ref",
        "ops.notify-ops",
        "--params",
        r#"{"name": "Ada"}"#,
    ]);
    assert_eq!(json(&out), serde_json::json!({"message": "Hello, Ada!"}));
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("log info  greeting execution=")),
        "{out:#?}"
    );
}
