//! The `stormhook` client commands (`st2`'s verbs) run as a user runs them: the real binary
//! against a real server. Every subcommand, `-j`, `--debug`, the config file and its precedence,
//! exit codes, and StackStorm's error report.
//!
//! The binary and the ways to run it come from the harness `host/app`'s own CLI tests use
//! (`host/app/tests/common/mod.rs`): see [`common::binary`] for how the binary is found from
//! this package, to which cargo does not hand its path.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use stormhook_tests::{TestServer, eventually_every};

#[path = "../../host/app/tests/common/mod.rs"]
mod common;

use common::{Output, run_async, stormhook_with_home};

// `openssl passwd -apr1 -salt abcdefgh secret`
const HTPASSWD: &str = "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n";

/// A server, and a home directory for the commands run against it.
struct Env {
    server: TestServer,
    home: tempfile::TempDir,
}

impl Env {
    async fn new(server: TestServer) -> Self {
        Self {
            server,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// The binary with `STORMHOOK_URL` and `ST2_API_KEY` set for the server.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = stormhook_with_home(self.home.path());
        cmd.env("STORMHOOK_URL", &self.server.base)
            .env("ST2_API_KEY", &self.server.key)
            .args(args);
        cmd
    }

    /// Runs `stormhook <args>` against the server.
    async fn run(&self, args: &[&str]) -> Output {
        run_async(self.command(args)).await
    }
}

async fn examples() -> Env {
    Env::new(TestServer::builder().examples().start().await).await
}

/// Asks `execution get -j` until the execution is no longer in progress.
async fn wait_done(env: &Env, id: &str) -> Value {
    eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(30),
        &format!("execution {id} to finish"),
        async || {
            let execution = env.run(&["execution", "get", id, "-j"]).await.json();
            let status = execution["status"].as_str().unwrap_or_default().to_owned();
            if !["requested", "scheduled", "running", "canceling"].contains(&status.as_str()) {
                return Ok(execution);
            }
            Err(execution.to_string())
        },
    )
    .await
}

#[tokio::test]
async fn webhook_list_and_get_show_the_registered_urls() {
    let env = examples().await;
    let out = env.run(&["webhook", "list"]).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert!(
        lines[0].starts_with("URL") && lines[0].contains("TYPE"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("github ") && l.contains("core.st2.webhook")),
        "{lines:?}"
    );
    let hooks = env.run(&["webhook", "list", "-j"]).await.json();
    assert!(
        hooks
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["parameters"]["url"] == "github")
    );

    let out = env.run(&["webhook", "get", "github"]).await;
    assert!(out.ok().starts_with("type"), "{out:#?}");
    assert!(out.stdout.contains("core.st2.webhook"), "{out:#?}");
    let hook = env.run(&["webhook", "get", "/github/", "-j"]).await.json();
    assert_eq!(hook["parameters"]["url"], "github");

    let out = env.run(&["webhook", "get", "nope"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .starts_with("ERROR: 404 Client Error: Not Found\nMESSAGE: "),
        "{out:#?}"
    );
}

#[tokio::test]
async fn rules_are_listed_shown_created_and_deleted() {
    let env = examples().await;
    let out = env.run(&["rule", "list"]).await;
    let table = out.ok();
    assert!(table.starts_with("REF"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("demo.push_to_main") && l.trim_end().ends_with("true")),
        "{table}"
    );
    let rules = env
        .run(&["rule", "list", "-j", "--pack", "demo"])
        .await
        .json();
    assert!(
        rules
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["pack"] == "demo")
    );
    let rules = env
        .run(&["rule", "list", "-j", "--pack", "nope"])
        .await
        .json();
    assert_eq!(rules, json!([]));

    let out = env.run(&["rule", "get", "demo.push_to_main"]).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert!(lines[0].starts_with("id "), "st2's order: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ref ") && l.ends_with("demo.push_to_main"))
    );
    let rule = env
        .run(&["rule", "get", "demo.push_to_main", "-j"])
        .await
        .json();
    assert_eq!(rule["action"]["ref"], "demo.greet");

    // Created from YAML (as the file says: enabled), and its webhook is registered at once.
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("on_push.yaml");
    std::fs::write(
        &yaml,
        "name: on_push\npack: examples\ndescription: from a file\nenabled: true\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: pushes\naction:\n  ref: core.noop\n",
    )
    .unwrap();
    let yaml = yaml.to_str().unwrap();
    let out = env.run(&["rule", "create", yaml]).await;
    assert!(
        out.ok()
            .lines()
            .any(|l| l.starts_with("ref ") && l.ends_with("examples.on_push")),
        "{out:#?}"
    );
    let hooks = env.run(&["webhook", "list"]).await;
    assert!(
        hooks.ok().lines().any(|l| l.starts_with("pushes ")),
        "{hooks:#?}"
    );
    let out = env.run(&["rule", "create", yaml]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .starts_with("ERROR: 409 Client Error: Conflict\n"),
        "{out:#?}"
    );

    // Created from JSON, disabled unless it says otherwise.
    let json_file = dir.path().join("other.json");
    std::fs::write(
        &json_file,
        json!({
            "name": "other", "pack": "examples",
            "trigger": {"type": "core.st2.webhook", "parameters": {"url": "other"}},
            "action": {"ref": "core.noop"}
        })
        .to_string(),
    )
    .unwrap();
    let created = env
        .run(&["rule", "create", json_file.to_str().unwrap(), "-j"])
        .await
        .json();
    assert_eq!(created["ref"], "examples.other");
    assert_eq!(created["enabled"], false);

    // A file that is not a rule is refused before anything is sent.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "- just\n- a list\n").unwrap();
    let out = env.run(&["rule", "create", bad.to_str().unwrap()]).await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("does not hold a rule"), "{out:#?}");

    for reference in ["examples.on_push", "examples.other"] {
        let out = env.run(&["rule", "delete", reference]).await;
        assert_eq!(
            out.ok(),
            format!("Resource with id \"{reference}\" has been successfully deleted.\n")
        );
    }
    let out = env.run(&["rule", "delete", "examples.on_push"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
}

#[tokio::test]
async fn errors_are_reported_as_st2_reports_them() {
    let env = examples().await;
    let out = env.run(&["rule", "get", "nope.nope"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "ERROR: 404 Client Error: Not Found\nMESSAGE: Resource with a reference or id \"nope.nope\" not found for url: {}/api/v1/rules/nope.nope\n",
            env.server.base
        )
    );
    assert!(out.stdout.is_empty());

    // Without a credential, the server's 401 message.
    let mut cmd = stormhook_with_home(env.home.path());
    cmd.env("STORMHOOK_URL", &env.server.base)
        .args(["rule", "list"]);
    let out = run_async(cmd).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains("ERROR: 401 Client Error: Unauthorized\nMESSAGE: Unauthorized - One of Token or API key required."),
        "{out:#?}"
    );

    // No server there: the URL is named, and `stormhook serve` suggested.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = env.run(&["key", "list", "--url", &url]).await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr
            .contains(&format!("cannot reach {url}/api/v1/keys"))
            && out.stderr.contains("stormhook serve"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn run_waits_for_the_result_and_exits_with_its_status() {
    let env = examples().await;
    let out = env.run(&["run", "core.local", "cmd=date"]).await;
    let text = out.ok();
    assert!(
        text.lines()
            .any(|l| l.starts_with("status") && l.contains("succeeded")),
        "{text}"
    );
    assert!(
        text.contains("core.local") && text.contains("\"return_code\": 0"),
        "{text}"
    );
    assert!(
        out.stderr.is_empty(),
        "no spinner without a terminal: {out:#?}"
    );

    // `cmd=date` stays a string, `timeout=5` becomes the integer the runner declares.
    let execution = env
        .run(&["run", "core.local", "cmd=date", "timeout=5", "-j"])
        .await
        .json();
    assert_eq!(execution["status"], "succeeded");
    assert_eq!(
        execution["parameters"],
        json!({"cmd": "date", "timeout": 5})
    );

    let out = env.run(&["run", "core.local", "cmd=exit 3"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("status") && l.contains("failed")),
        "{out:#?}"
    );
    assert!(out.stdout.contains("\"return_code\": 3"), "{out:#?}");

    let execution = env
        .run(&["run", "core.echo", "message=hi", "-j"])
        .await
        .json();
    assert_eq!(execution["status"], "succeeded");
    assert_eq!(execution["result"]["stdout"], "hi");
    assert_eq!(execution["action"]["ref"], "core.echo");

    // Bad parameters: refused locally (a type) or by the server (an unknown action).
    let out = env
        .run(&["run", "core.local", "cmd=date", "timeout=soon"])
        .await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr
            .contains("parameter `timeout` is of type integer"),
        "{out:#?}"
    );
    let out = env.run(&["run", "core.local", "date"]).await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    let out = env.run(&["run", "nope.nope", "x=1"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("MESSAGE: Action \"nope.nope\" cannot be found."),
        "{out:#?}"
    );
}

#[tokio::test]
async fn executions_are_listed_shown_and_canceled() {
    let env = examples().await;
    // `-a` returns at once with the id.
    let requested = env
        .run(&["run", "core.local", "cmd=echo one", "-a", "-j"])
        .await
        .json();
    let first = requested["id"].as_str().unwrap().to_owned();
    let out = env.run(&["run", "core.local", "cmd=exit 1", "-a"]).await;
    let second = out
        .ok()
        .lines()
        .find_map(|l| l.strip_prefix("id"))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert!(
        out.stderr
            .contains(&format!("stormhook execution get {second}")),
        "{out:#?}"
    );
    assert_eq!(wait_done(&env, &first).await["status"], "succeeded");
    assert_eq!(wait_done(&env, &second).await["status"], "failed");

    let out = env.run(&["execution", "get", &first]).await;
    assert!(out.ok().contains("\"stdout\": \"one\""), "{out:#?}");

    // Newest last, as st2 shows them.
    let out = env.run(&["execution", "list"]).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&first) && lines[1].contains("succeeded"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with(&second) && lines[2].contains("failed"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("core.local") && lines[1].contains("admin"),
        "{lines:?}"
    );
    let failed = env
        .run(&["execution", "list", "--status", "failed", "-j"])
        .await
        .json();
    let ids: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, [second.as_str()]);
    let out = env.run(&["execution", "list", "-n", "1"]).await;
    assert_eq!(out.ok().lines().count(), 2, "{out:#?}");
    assert!(out.stderr.contains("only 1 of 2 executions"), "{out:#?}");
    let none = env
        .run(&["execution", "list", "--action", "core.echo", "-j"])
        .await
        .json();
    assert_eq!(none, json!([]));

    // Cancel a long one; a second cancel is answered the canceled execution (as st2api
    // answers it), and a completed one cannot be canceled.
    let long = env
        .run(&["run", "core.local", "cmd=sleep 30", "-a", "-j"])
        .await
        .json();
    let long = long["id"].as_str().unwrap().to_owned();
    let out = env.run(&["execution", "cancel", &long]).await;
    assert!(
        out.ok()
            .starts_with(&format!("Action execution with id {long}")),
        "{out:#?}"
    );
    assert_eq!(wait_done(&env, &long).await["status"], "canceled");
    let out = env.run(&["execution", "cancel", &long]).await;
    assert_eq!(
        out.ok(),
        format!("Action execution with id {long} canceled.\n"),
        "{out:#?}"
    );
    let quick = env.run(&["run", "core.noop", "-j"]).await.json();
    let quick = quick["id"].as_str().unwrap().to_owned();
    let out = env.run(&["execution", "cancel", &quick]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("ERROR: Action cannot be canceled. State = succeeded."),
        "{out:#?}"
    );
    let out = env
        .run(&["execution", "get", "0123456789abcdef01234567"])
        .await;
    assert_eq!(out.code, Some(1), "{out:#?}");
}

#[tokio::test]
async fn trigger_instances_are_listed_shown_and_re_emitted() {
    let env = examples().await;
    let resp = env
        .server
        .client()
        .post(env.server.url("/api/v1/webhooks/github"))
        .json(&json!({"ref": "refs/heads/main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let out = env.run(&["trigger-instance", "list"]).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("TRIGGER"),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    let list = env.run(&["trigger-instance", "list", "-j"]).await.json();
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert!(lines[1].starts_with(&id), "{lines:?}");

    let out = env.run(&["trigger-instance", "get", &id]).await;
    assert!(out.ok().starts_with("id "), "{out:#?}");
    assert!(out.stdout.contains("refs/heads/main"), "{out:#?}");
    let instance = env
        .run(&["trigger-instance", "get", &id, "-j"])
        .await
        .json();
    assert_eq!(instance["payload"]["body"]["ref"], "refs/heads/main");

    let out = env.run(&["trigger-instance", "re-emit", &id]).await;
    assert_eq!(
        out.ok(),
        format!("Trigger instance {id} succesfully re-sent.\n")
    );
    let list = env.run(&["trigger-instance", "list", "-j"]).await.json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let out = env.run(&["trigger-instance", "get", "nope"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
}

#[tokio::test]
async fn keys_are_set_read_listed_and_deleted() {
    let env = examples().await;
    let out = env.run(&["key", "set", "greeting", "hello world"]).await;
    assert!(
        out.ok()
            .lines()
            .any(|l| l.starts_with("value ") && l.ends_with("hello world")),
        "{out:#?}"
    );
    env.run(&["key", "set", "other", "2"]).await.ok();
    let key = env.run(&["key", "get", "greeting", "-j"]).await.json();
    assert_eq!(key["value"], "hello world");
    assert_eq!(key["scope"], "st2kv.system");
    let out = env.run(&["key", "get", "greeting"]).await;
    assert!(out.ok().starts_with("name "), "{out:#?}");

    let out = env.run(&["key", "list"]).await;
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("greeting ") && l.contains("hello world"))
    );
    let keys = env
        .run(&["key", "list", "--prefix", "gree", "-j"])
        .await
        .json();
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["name"], "greeting");

    let out = env.run(&["key", "delete", "greeting"]).await;
    assert_eq!(
        out.ok(),
        "Resource with id \"greeting\" has been successfully deleted.\n"
    );
    let out = env.run(&["key", "get", "greeting"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains(
            "MESSAGE: KeyValuePair with name: greeting and scope: st2kv.system not found in db."
        ),
        "{out:#?}"
    );
}

#[tokio::test]
async fn auth_gets_a_token_that_works() {
    let env = Env::new(
        TestServer::builder()
            .examples()
            .htpasswd(HTPASSWD)
            .start()
            .await,
    )
    .await;
    let out = env.run(&["auth", "alice", "-p", "secret"]).await;
    let text = out.ok();
    assert!(text.starts_with("user "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("user ") && l.ends_with("alice"))
    );
    assert!(text.lines().any(|l| l.starts_with("expiry ")));

    let out = env
        .run(&["auth", "alice", "-p", "secret", "-t", "-l", "60"])
        .await;
    let token = out.ok().trim().to_owned();
    assert_eq!(token.len(), 32, "{out:#?}");
    assert_eq!(out.stdout.lines().count(), 1);

    // The token alone is a credential.
    let mut cmd = stormhook_with_home(env.home.path());
    cmd.env("STORMHOOK_URL", &env.server.base)
        .env("ST2_AUTH_TOKEN", &token)
        .args(["rule", "list", "-j"]);
    assert!(run_async(cmd).await.json().as_array().is_some());
    let mut cmd = stormhook_with_home(env.home.path());
    cmd.args(["key", "list", "--url", &env.server.base, "--token", &token]);
    run_async(cmd).await.ok();

    // The password from the environment; -j.
    let mut cmd = env.command(&["auth", "alice", "-j"]);
    cmd.env("STORMHOOK_PASSWORD", "secret");
    let body = run_async(cmd).await.json();
    assert_eq!(body["user"], "alice");

    let out = env.run(&["auth", "alice", "-p", "wrong"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .starts_with("ERROR: 401 Client Error: Unauthorized\nMESSAGE: Invalid or missing credentials for url: "),
        "{out:#?}"
    );
    // No password and no terminal to ask on.
    let out = env.run(&["auth", "alice"]).await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("no password"), "{out:#?}");
}

#[tokio::test]
async fn debug_prints_each_request_as_a_curl_line_with_the_raw_answer() {
    let env = examples().await;
    let out = env.run(&["rule", "list", "--debug", "-j"]).await;
    // stdout stays the JSON alone.
    let rules = out.json();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    let id = lines[0]
        .strip_prefix("# -------- begin ")
        .and_then(|l| l.strip_suffix(" request ----------"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(id.parse::<u64>().is_ok(), "{lines:?}");
    assert_eq!(
        lines[1],
        format!(
            "curl -X GET -H  'St2-Api-Key: {}' -H  'Accept: application/json' -H  'User-Agent: stormhook/{}' '{}/api/v1/rules?limit=50'",
            env.server.key,
            env!("CARGO_PKG_VERSION"),
            env.server.base
        )
    );
    assert_eq!(
        lines[2],
        format!("# -------- begin {id} response ----------")
    );
    assert_eq!(serde_json::from_str::<Value>(lines[3]).unwrap(), rules);
    assert_eq!(
        lines[4],
        format!("# -------- end {id} response ------------")
    );
    assert_eq!(lines[5], "");

    // Before the subcommand, as `st2 --debug rule list` is written, it works the same.
    let first = env.run(&["--debug", "rule", "list", "-j"]).await;
    assert_eq!(first.json(), rules);
    assert!(first.stderr.starts_with("# -------- begin "), "{first:?}");
    assert!(
        first.stderr.contains("curl -X GET -H  'St2-Api-Key: "),
        "{first:?}"
    );

    // A body is shown with --data-binary; every request of `run` is shown.
    let out = env
        .run(&["run", "core.echo", "message=it's", "--debug"])
        .await;
    out.ok();
    let curls: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("curl "))
        .collect();
    assert!(
        curls.len() >= 4,
        "action, runner, execution, polls: {curls:?}"
    );
    assert!(
        curls[0].starts_with("curl -X GET -H  'St2-Api-Key: "),
        "{curls:?}"
    );
    assert!(curls[0].ends_with("/api/v1/actions/core.echo"), "{curls:?}");
    assert!(
        curls[1].ends_with("/api/v1/runnertypes?name=local-shell-cmd'"),
        "{curls:?}"
    );
    assert!(
        curls[2].starts_with("curl -X POST -H  'St2-Api-Key: ")
            && curls[2].contains(
                r#"--data-binary '{"action":"core.echo","parameters":{"message":"it'"'"'s"}}'"#
            ),
        "{curls:?}"
    );

    // An error answer is shown before the report.
    let out = env.run(&["rule", "get", "nope.nope", "--debug"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("{\"faultstring\":\"Resource with a reference or id \\\"nope.nope\\\" not found\"}\n# -------- end "),
        "{out:#?}"
    );
}

#[tokio::test]
async fn settings_come_from_flags_then_env_then_the_config_file() {
    let env = examples().await;
    let dead = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}")
    };
    let config_dir = env.home.path().join(".config/stormhook");
    std::fs::create_dir_all(&config_dir).unwrap();
    let write_config = |url: &str| {
        std::fs::write(
            config_dir.join("config.toml"),
            format!(
                "# written by the test\nurl = \"{url}\"\napi_key = \"{}\"  # the admin key\n",
                env.server.key
            ),
        )
        .unwrap();
    };

    // The default config file alone: no flag, no environment variable.
    write_config(&env.server.base);
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.args(["rule", "list", "-j"]);
        cmd
    })
    .await;
    assert!(out.json().as_array().is_some());

    // The config file names a dead server: a flag, or the environment, wins over it.
    write_config(&dead);
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.args(["rule", "list"]);
        cmd
    })
    .await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr
            .contains(&format!("cannot reach {dead}/api/v1/rules")),
        "{out:#?}"
    );
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.args(["rule", "list", "-j", "--url", &env.server.base]);
        cmd
    })
    .await;
    assert!(out.json().as_array().is_some(), "the flag wins");
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.env("STORMHOOK_URL", &env.server.base)
            .args(["rule", "list", "-j"]);
        cmd
    })
    .await;
    assert!(out.json().as_array().is_some(), "the environment wins");
    // ... and the flag wins over the environment.
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.env("STORMHOOK_URL", &env.server.base)
            .args(["rule", "list", "--url", &dead]);
        cmd
    })
    .await;
    assert_eq!(out.code, Some(2), "{out:#?}");

    // A wrong key in the environment wins over the config file's right one.
    write_config(&env.server.base);
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.env("ST2_API_KEY", "not-a-key").args(["rule", "list"]);
        cmd
    })
    .await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .starts_with("ERROR: 401 Client Error: Unauthorized"),
        "{out:#?}"
    );

    // --config (or STORMHOOK_CONFIG) names another file; a missing one is an error.
    let other = env.home.path().join("other.toml");
    std::fs::write(
        &other,
        format!(
            "url = '{}'\napi_key = \"{}\"\n",
            env.server.base, env.server.key
        ),
    )
    .unwrap();
    write_config(&dead);
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.args(["key", "list", "-j", "--config"]).arg(&other);
        cmd
    })
    .await;
    assert_eq!(out.json(), json!([]));
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.env("STORMHOOK_CONFIG", &other)
            .args(["key", "list", "-j"]);
        cmd
    })
    .await;
    assert_eq!(out.json(), json!([]));
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.args(["key", "list", "--config"])
            .arg(env.home.path().join("missing.toml"));
        cmd
    })
    .await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(out.stderr.contains("missing.toml"), "{out:#?}");

    // A typo in the config file is reported with its line.
    std::fs::write(
        config_dir.join("config.toml"),
        "url = \"x\"\napi-key = \"k\"\n",
    )
    .unwrap();
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.args(["key", "list"]);
        cmd
    })
    .await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr
            .contains("config.toml:2: unknown field `api-key`"),
        "{out:#?}"
    );
}

#[tokio::test]
async fn plugin_and_apikey_commands_still_work() {
    let env = examples().await;
    let out = env.run(&["plugin", "list"]).await;
    let text = out.ok();
    assert!(
        text.starts_with("REF") && text.contains("LAST ERROR"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("demo.greet ") && l.contains("action"))
    );
    let plugins = env.run(&["plugin", "list", "-j"]).await.json();
    assert!(
        plugins
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["ref"] == "demo.greet")
    );
    let out = env.run(&["plugin", "reload"]).await;
    assert!(out.ok().contains("demo.greet"), "{out:#?}");
    let report = env.run(&["plugin", "reload", "-j"]).await.json();
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");

    // `apikey` still works on the store, offline.
    let out = run_async({
        let mut cmd = stormhook_with_home(env.home.path());
        cmd.args(["apikey", "list", "-j", "--data-dir"])
            .arg(env.server.dir.path());
        cmd
    })
    .await;
    let keys = out.json();
    assert_eq!(keys[0]["user"], "admin", "{keys}");
}

/// `serve` opens its port before it compiles anything: with 20 slow-to-compile components in
/// the packs, it answers HTTP at once, says through `/readyz` (503) and `plugin list`
/// (`loading`) that they are still loading, and becomes ready once each has loaded or failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_at_once_while_20_slow_plugins_compile_in_the_background() {
    let data = tempfile::tempdir().unwrap();
    let packs = data.path().join("packs");
    let actions = packs.join("slow/actions");
    std::fs::create_dir_all(&actions).unwrap();
    for i in 0..20 {
        // Distinct components (no shared cache entry), each compiling for a while; they
        // implement no world, so each ends `failed` after its compile.
        std::fs::write(
            actions.join(format!("a{i}.wasm")),
            stormhook_tests::generated_component(12_000 + i, 20, 0),
        )
        .unwrap();
        std::fs::write(
            actions.join(format!("a{i}.yaml")),
            format!("name: a{i}\nrunner_type: wasm\nentry_point: a{i}.wasm\n"),
        )
        .unwrap();
    }
    let key = common::offline_key(data.path());
    let started = std::time::Instant::now();
    let packs_arg = packs.to_str().unwrap().to_owned();
    let serve = common::spawn_serve(data.path(), &["--packs", &packs_arg]);
    let client = reqwest::Client::new();
    let first = client
        .get(format!("{}/readyz", serve.url))
        .send()
        .await
        .unwrap();
    let answered_after = started.elapsed();
    assert_eq!(first.status(), 503, "not ready while plugins compile");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["ready"], false, "{body}");
    assert!(
        body["plugins"]["loading"].as_u64().unwrap() > 0,
        "answered while plugins were still loading: {body}"
    );
    println!("first answer after {answered_after:?}: {body}");
    // The process started, opened its port and answered well within a second of compiling
    // time (20 components take far longer than that to compile on this machine).
    assert!(
        answered_after < Duration::from_secs(5),
        "first answer only after {answered_after:?}"
    );
    let listed: Value = client
        .get(format!("{}/api/v1/plugins", serve.url))
        .header("St2-Api-Key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["state"] == "loading"),
        "{listed}"
    );
    let ready = eventually_every(
        Duration::from_millis(200),
        Duration::from_secs(180),
        "every plugin to have loaded or failed",
        async || {
            let resp = client
                .get(format!("{}/readyz", serve.url))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let body: Value = resp.json().await.map_err(|e| e.to_string())?;
            if status == 200 {
                Ok(body)
            } else {
                Err(format!("{status} {body}"))
            }
        },
    )
    .await;
    assert_eq!(ready["plugins"]["failed"], 20, "{ready}");
    println!("ready after {:?}", started.elapsed());
}
