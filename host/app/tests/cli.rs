//! The `stormhook` binary as a user runs it: `serve` on a fresh data directory (the example packs
//! are installed and loaded), `plugin list` and `plugin reload` against it, and clear failures.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{offline_key, run, spawn_serve, spawn_serve_with, stormhook};

#[test]
fn help_lists_the_commands() {
    let out = run(stormhook().arg("--help"));
    let text = out.ok();
    for command in ["serve", "plugin"] {
        assert!(text.contains(command), "{text}");
    }
    let out = stormhook().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--bind",
        "--data-dir",
        "--packs",
        "STORMHOOK_BIND",
        "STORMHOOK_DATA_DIR",
        "STORMHOOK_PACKS",
        "127.0.0.1:9101",
    ] {
        assert!(text.contains(flag), "serve --help mentions {flag}: {text}");
    }
}

#[test]
fn serve_installs_the_examples_and_plugin_list_shows_them() {
    let data = tempfile::tempdir().unwrap();
    let key = offline_key(data.path());
    let server = spawn_serve(data.path(), &[]);
    let list = |extra: &[&str]| {
        run(stormhook()
            .args(["plugin", "list", "--url", &server.url, "--api-key", &key])
            .args(extra))
        .ok()
        .to_owned()
    };
    // Components compile in the background after the port opens: wait until each is ready.
    let waited = Instant::now();
    let mut rows: Vec<serde_json::Value> = serde_json::from_str(&list(&["-j"])).unwrap();
    while !rows.iter().all(|r| r["state"] == "ready") {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "not ready after 60 s: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        rows = serde_json::from_str(&list(&["-j"])).unwrap();
    }
    let table = list(&[]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("REF")
            && header.contains("STATE")
            && header.contains("VERSION")
            && header.contains("LOADED AT")
            && header.contains("LAST ERROR"),
        "{table}"
    );
    for reference in ["demo.greet", "demo.counter", "demo.push_to_main"] {
        assert!(
            table.lines().any(|l| l.starts_with(reference)),
            "{reference} listed: {table}"
        );
    }
    assert!(
        rows.iter()
            .all(|r| r["version"].as_str().is_some_and(|v| v.len() == 64)),
        "{rows:?}"
    );

    let started = Instant::now();
    let reloaded = run(stormhook()
        .args(["plugin", "reload", "--url", &server.url])
        .env("ST2_API_KEY", &key));
    assert!(reloaded.ok().contains("demo.greet"));
    assert!(started.elapsed() < Duration::from_secs(30));

    // Without a credential the server says what is missing.
    let out = stormhook()
        .args(["plugin", "list", "--url", &server.url])
        .env_remove("ST2_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Unauthorized - One of Token or API key required.")
    );
}

#[test]
fn first_start_prints_a_working_key_once_with_a_curl_line() {
    let data = tempfile::tempdir().unwrap();
    let server = spawn_serve(data.path(), &[]);
    let mut printed = Vec::new();
    while let Ok(line) = server.stdout.recv_timeout(Duration::from_secs(5)) {
        let done = line.contains("More keys:");
        printed.push(line);
        if done {
            break;
        }
    }
    let text = printed.join("\n");
    let key = printed
        .iter()
        .skip_while(|l| !l.contains("first API key"))
        .nth(2)
        .map(|l| l.trim().to_owned())
        .unwrap_or_default();
    assert_eq!(key.len(), 43, "{text}");
    let curl = printed
        .iter()
        .find(|l| l.trim_start().starts_with("curl "))
        .expect("a curl line");
    assert!(
        curl.contains(&format!("St2-Api-Key: {key}")) && curl.contains("/api/v1/webhooks/github"),
        "{curl}"
    );
    run(stormhook().args(["plugin", "list", "--url", &server.url, "--api-key", &key])).ok();

    // The key is stored only as a hash, and a restart does not make another.
    let db = std::fs::read(data.path().join("stormhook.db")).unwrap();
    assert!(
        !db.windows(key.len()).any(|w| w == key.as_bytes()),
        "the key is not in the database"
    );
    let out = stormhook()
        .args(["apikey", "list", "-j", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.len(), 1);
}

#[test]
fn apikey_commands_work_offline() {
    let data = tempfile::tempdir().unwrap();
    let out = run(stormhook()
        .args([
            "apikey",
            "create",
            "-u",
            "ci",
            "-m",
            "team=ops",
            "--data-dir",
        ])
        .arg(data.path()));
    let text = out.ok();
    assert!(
        text.contains("user:    ci") && text.contains("shown only now"),
        "{text}"
    );
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_owned();
    let out = stormhook()
        .args(["apikey", "list", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains(&id) && table.contains("ci"), "{table}");
    run(stormhook()
        .args(["apikey", "delete", &id, "--data-dir"])
        .arg(data.path()))
    .ok();
    let out = stormhook()
        .args(["apikey", "delete", &id, "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("ApiKey with key or id={id} not found."))
    );

    // A mistyped data directory is refused, not turned into an empty store.
    let typo = data.path().join("typo");
    let out = stormhook()
        .args(["apikey", "list", "--data-dir"])
        .arg(&typo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store in"));
    assert!(!typo.exists());
}

#[test]
fn client_commands_say_when_no_server_answers() {
    // A port nothing listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = stormhook()
        .args(["plugin", "list", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("cannot reach {url}/api/v1/plugins"))
            && err.contains("stormhook serve"),
        "{err}"
    );
}

/// Sends one raw HTTP/1.1 request and returns the answer.
fn raw_request(url: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn query_string_credentials_never_reach_the_log() {
    let data = tempfile::tempdir().unwrap();
    let key = offline_key(data.path());
    let mut verbose = stormhook();
    verbose.arg("-v").env(
        "RUST_LOG",
        "debug,cranelift_codegen=info,wasmtime_cranelift=info",
    );
    let server = spawn_serve_with(verbose, data.path(), &[]);
    let url = server.url.clone();
    let bad = "CANARYBADKEY0123456789";
    for (path, body) in [
        (
            format!("/api/v1/webhooks/github?st2-api-key={key}"),
            r#"{"ref": "refs/heads/main"}"#,
        ),
        (format!("/api/v1/webhooks/github?st2-api-key={bad}"), "{}"),
        (format!("/api/v1/triggerinstances?x-auth-token={bad}"), ""),
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = raw_request(&url, &request);
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    }
    // A second server on the same data directory is refused while the first runs.
    let second_log = data.path().join("second.log");
    let mut second = stormhook()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&second_log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = second.kill();
            panic!("a second server on the same data directory kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let said = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        said.contains("another `stormhook serve` is using the data directory"),
        "{said}"
    );
    let text = server.stop();
    assert!(text.contains("DEBUG"), "debug logging was on");
    assert!(
        !text.contains(&key) && !text.contains(bad),
        "a credential reached the log"
    );
}

/// The example rule and a trigger instance file in a temporary folder.
fn rule_fixture(
    body: &serde_json::Value,
    event: &str,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    stormhook::examples::install(dir.path()).unwrap();
    let rule = dir.path().join("demo/rules/push_to_main.yaml");
    let instance = dir.path().join("ti.json");
    let ti = serde_json::json!({
        "trigger": "core.st2.webhook",
        "payload": {"headers": {"X-Github-Event": event}, "headers_lower": {"x-github-event": event}, "body": body}
    });
    std::fs::write(&instance, ti.to_string()).unwrap();
    (dir, rule, instance)
}

fn rule_test(rule: &std::path::Path, instance: &std::path::Path) -> (Option<i32>, String, String) {
    let out = run(stormhook()
        .args(["rule", "test", "--rule"])
        .arg(rule)
        .arg("--trigger-instance")
        .arg(instance));
    (out.code, out.stdout, out.stderr)
}

#[test]
fn rule_test_explains_matches_and_failures() {
    let push = serde_json::json!({"ref": "refs/heads/main", "pusher": {"name": "ada"}});
    let (_dir, rule, instance) = rule_fixture(&push, "push");
    let (code, out, err) = rule_test(&rule, &instance);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("MATCH: rule `demo.push_to_main` matches; it would run `demo.greet`"),
        "{out}"
    );
    assert!(
        out.contains(r#"matched with values {"branch":"main","pusher":"ada"}"#),
        "{out}"
    );
    assert!(err.is_empty(), "one-shot commands log only warnings: {err}");

    let (_dir, rule, instance) = rule_fixture(&push, "issues");
    let (code, out, _) = rule_test(&rule, &instance);
    assert_eq!(code, Some(1));
    assert!(out.contains(r#"criterion `trigger.headers_lower['x-github-event']` (equals) failed: value "issues" vs pattern "push""#), "{out}");

    let (_dir, rule, instance) =
        rule_fixture(&serde_json::json!({"ref": "refs/heads/dev"}), "push");
    let (code, out, _) = rule_test(&rule, &instance);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("the rule component `branch_filter.wasm` decided no match"),
        "{out}"
    );

    // Written by hand with `headers` only (as the README shows it): `headers_lower` is derived.
    let (_dir, rule, instance) = rule_fixture(&push, "push");
    std::fs::write(
        &instance,
        r#"{"trigger": "core.st2.webhook", "payload": {"headers": {"X-GitHub-Event": "push"}, "body": {"ref": "refs/heads/main", "pusher": {"name": "ada"}}}}"#,
    )
    .unwrap();
    let (code, out, err) = rule_test(&rule, &instance);
    assert_eq!(code, Some(0), "{out}{err}");

    // A trigger instance of another trigger.
    std::fs::write(
        &instance,
        r#"{"trigger": "git.pr-merged", "payload": {"a": 1}}"#,
    )
    .unwrap();
    let (code, out, _) = rule_test(&rule, &instance);
    assert_eq!(code, Some(1));
    assert!(out.contains("listens to `core.st2.webhook`"), "{out}");

    // A broken rule file: exit 2 with file, line and column.
    std::fs::write(&rule, "name: r\ntrigger: [\n").unwrap();
    let (code, _, err) = rule_test(&rule, &instance);
    assert_eq!(code, Some(2));
    assert!(err.contains("push_to_main.yaml:"), "{err}");
}

#[test]
fn rule_test_reads_a_stored_trigger_instance_by_id() {
    use stormhook_storage::Store as _;
    let data = tempfile::tempdir().unwrap();
    let (_dir, rule, _) = rule_fixture(&serde_json::json!({}), "push");
    let id = stormhook_storage::ids::object_id();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = stormhook_storage::sqlite::SqliteStore::open(&data.path().join("stormhook.db")).await.unwrap();
        let trace = stormhook_storage::Trace { id: stormhook_storage::ids::object_id(), trace_tag: "t".into(), start_timestamp: stormhook_storage::ids::now(), trigger_instances: vec![] };
        let instance = stormhook_storage::TriggerInstance {
            id: id.clone(),
            trigger: "core.st2.webhook".into(),
            trigger_type: Some("core.st2.webhook".into()),
            payload: serde_json::json!({"headers_lower": {"x-github-event": "push"}, "body": {"ref": "refs/heads/master", "pusher": {"name": "grace"}}}),
            occurrence_time: stormhook_storage::ids::now(),
            status: stormhook_storage::InstanceStatus::Pending,
            trace_id: Some(trace.id.clone()),
            depth: 0,
        };
        store.commit_events(&[stormhook_storage::NewEvent::new(trace, vec![instance])]).await.unwrap();
    });
    let out = stormhook()
        .args(["rule", "test", "--rule"])
        .arg(&rule)
        .args(["--trigger-instance-id", &id, "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(r#""pusher":"grace""#), "{text}");
}

#[test]
fn rule_test_reads_the_datastore_of_the_data_dir() {
    use stormhook_storage::Store as _;
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = stormhook_storage::sqlite::SqliteStore::open(&data.path().join("stormhook.db"))
            .await
            .unwrap();
        store.kv_set("deploy.branch", "release").await.unwrap();
    });
    let rule = data.path().join("rule.yaml");
    std::fs::write(
        &rule,
        "name: deploy\ntrigger:\n  type: core.st2.webhook\n  parameters: {url: deploy}\ncriteria:\n  trigger.body.branch:\n    type: equals\n    pattern: \"{{ st2kv.system['deploy.branch'] }}\"\naction: {ref: core.noop}\n",
    )
    .unwrap();
    let instance = data.path().join("ti.json");
    std::fs::write(
        &instance,
        r#"{"trigger": "core.st2.webhook", "payload": {"body": {"branch": "release"}}}"#,
    )
    .unwrap();
    let out = stormhook()
        .args(["rule", "test", "--rule"])
        .arg(&rule)
        .arg("--trigger-instance")
        .arg(&instance)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the store, the key does not exist: it renders as "" (StackStorm's datastore
    // lookups are never undefined), so the criterion does not hold.
    let empty = tempfile::tempdir().unwrap();
    let out = stormhook()
        .args(["rule", "test", "--rule"])
        .arg(&rule)
        .arg("--trigger-instance")
        .arg(&instance)
        .arg("--data-dir")
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(r#"failed: value "release" vs pattern """#),
        "{text}"
    );
    assert!(
        !empty.path().join("stormhook.db").exists(),
        "the tester never creates a store"
    );
}

/// One webhook can be followed through the log by its trigger-instance id: the request that
/// accepted it, the rules engine's evaluation and enforcement, and the execution it caused.
#[test]
fn one_webhook_can_be_followed_through_the_log_by_its_trigger_instance_id() {
    let data = tempfile::tempdir().unwrap();
    let key = offline_key(data.path());
    let mut logging = stormhook();
    logging.env(
        "RUST_LOG",
        "info,stormhook_server=debug,stormhook_automation=debug",
    );
    let started = Instant::now();
    let server = spawn_serve_with(logging, data.path(), &[]);
    let url = server.url.clone();
    let read = || server.log();
    let body = r#"{"ref": "refs/heads/main", "pusher": {"name": "ada"}}"#;
    let answer = raw_request(
        &url,
        &format!(
            "POST /api/v1/webhooks/github HTTP/1.1\r\nHost: x\r\nSt2-Api-Key: {key}\r\nX-Request-ID: trace-me-1\r\nX-GitHub-Event: push\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    // The request's span names the request id; its "accepted" line names the instance.
    let (id, text) = loop {
        let text = read();
        let accepted = text
            .lines()
            .find(|l| l.contains("request_id=trace-me-1") && l.contains("webhook accepted"));
        if let Some(line) = accepted
            && let Some(id) = line.split("trigger_instances=[\"").nth(1)
            && let Some(id) = id.split('"').next()
            && text.contains("execution finished")
        {
            break (id.to_owned(), text);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the webhook was not followed to an execution: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(server);
    let accepted = text
        .lines()
        .find(|l| l.contains("request_id=trace-me-1") && l.contains("webhook accepted"))
        .unwrap();
    assert!(
        accepted.contains("path=/api/v1/webhooks/github")
            && accepted.contains("route=/api/v1/webhooks/{hook}"),
        "the request span names the path and the matched route: {accepted}"
    );
    let about = |needle: &str| {
        text.lines()
            .find(|l| l.contains(&format!("trigger_instance={id}")) && l.contains(needle))
            .unwrap_or_else(|| panic!("no '{needle}' line for trigger instance {id}: {text}"))
            .to_owned()
    };
    let enforced = about("rule enforced");
    assert!(
        enforced.contains("rule=demo.push_to_main") && enforced.contains("status=succeeded"),
        "{enforced}"
    );
    let execution = enforced
        .split("execution=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    let finished = about("execution finished");
    assert!(
        finished.contains(&format!("id={execution}"))
            && finished.contains("action=demo.greet")
            && finished.contains("status=succeeded"),
        "{finished}"
    );
}
