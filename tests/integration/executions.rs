//! Executions end to end (`docs/st2-api.md` §4): the seed's curl line, statuses and
//! their log, the `wait` option, validation messages, cancel, listing, WASM actions (results,
//! typed errors, traps, deadlines, datastore), core actions, the datastore API, and rules that
//! request executions.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stormhook_tests::{TestServer, eventually, faultstring, webhook_rule};

async fn post(server: &TestServer, path: &str, body: Value) -> reqwest::Response {
    server
        .client()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Requests `action` and returns the 201 body.
async fn request(server: &TestServer, action: &str, parameters: Value) -> Value {
    let resp = post(
        server,
        "/api/v1/executions",
        json!({"action": action, "parameters": parameters, "user": null}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

const DONE: &[&str] = &["succeeded", "failed", "timeout", "canceled", "abandoned"];

/// Polls the execution until it completes.
async fn finished(server: &TestServer, id: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        &format!("execution {id} to complete"),
        async || {
            let e = server.get_json(&format!("/api/v1/executions/{id}")).await;
            if DONE.contains(&e["status"].as_str().unwrap()) {
                return Ok(e);
            }
            Err(format!("not done: {e}"))
        },
    )
    .await
}

fn statuses(e: &Value) -> Vec<&str> {
    e["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_curl_line_runs_date() {
    let server = TestServer::builder().start().await;
    // The seed's last curl line, verbatim apart from the host.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            &server.url("/api/v1/executions"),
            "-H",
            &format!("St2-Api-Key: {}", server.key),
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"action": "core.local", "parameters": {"cmd": "date"}}"#,
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "201", "{body}");
    let created: Value = serde_json::from_str(body).unwrap();
    assert_eq!(created["status"], "requested");
    assert_eq!(created["action"]["ref"], "core.local");
    assert_eq!(created["action"]["runner_type"], "local-shell-cmd");
    assert_eq!(created["runner"]["name"], "local-shell-cmd");
    assert_eq!(created["liveaction"]["action"], "core.local");
    assert_eq!(created["parameters"], json!({"cmd": "date"}));
    assert_eq!(created["context"], json!({"user": "admin", "pack": "core"}));
    assert_eq!(statuses(&created), ["requested"]);
    assert!(created.get("result").is_none(), "falsy fields are omitted");

    let done = finished(&server, created["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        statuses(&done),
        ["requested", "scheduled", "running", "succeeded"]
    );
    let year = String::from_utf8(
        std::process::Command::new("date")
            .arg("+%Y")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let year = year.trim();
    let stdout = done["result"]["stdout"].as_str().unwrap();
    assert!(stdout.contains(year), "{stdout}");
    assert_eq!(done["result"]["return_code"], 0);
    assert_eq!(done["result"]["succeeded"], true);
    assert!(done["elapsed_seconds"].as_f64().unwrap() > 0.0);
    assert!(done["end_timestamp"].as_str().unwrap() >= done["start_timestamp"].as_str().unwrap());
    assert_eq!(done["liveaction"]["runner_info"]["pid"], std::process::id());

    // `last` is the newest.
    let last = server.get_json("/api/v1/executions/last").await;
    assert_eq!(last["id"], done["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_local_statuses_and_the_wait_option() {
    let server = TestServer::builder().start().await;
    // wait: the answer is the finished execution.
    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.local", "parameters": {"cmd": "echo '{\"a\": [1, 2]}'"}}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["status"], "succeeded");
    assert_eq!(
        e["result"]["stdout"],
        json!({"a": [1, 2]}),
        "stdout is JSON-decoded"
    );

    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.local", "parameters": {"cmd": "echo oops >&2; exit 3"}}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["status"], "failed");
    assert_eq!(e["result"]["return_code"], 3);
    assert_eq!(e["result"]["stderr"], "oops");

    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.local", "parameters": {"cmd": "sleep 30", "timeout": 1}}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["status"], "timeout");
    assert_eq!(e["result"]["return_code"], -9);
    assert_eq!(
        e["result"]["error"],
        "Action failed to complete in 1 seconds"
    );

    // At the deadline, the current state.
    let started = Instant::now();
    let resp = post(
        &server,
        "/api/v1/executions?wait=1",
        json!({"action": "core.local", "parameters": {"cmd": "sleep 3"}}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert!(["requested", "scheduled", "running"].contains(&e["status"].as_str().unwrap()));
    assert_eq!(
        finished(&server, e["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );

    let resp = post(
        &server,
        "/api/v1/executions?wait=9999",
        json!({"action": "core.noop"}),
    )
    .await;
    assert_eq!(resp.status(), 400);

    // cwd and env.
    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.local", "parameters": {"cmd": "pwd; echo $GREETING", "cwd": "/tmp", "env": {"GREETING": "hi"}}}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["result"]["stdout"], "/tmp\nhi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_stackstorms_messages() {
    let server = TestServer::builder().start().await;
    let cases = [
        (
            json!({"action": "nope.nope"}),
            "Action \"nope.nope\" cannot be found.",
        ),
        (json!({"parameters": {}}), "'action' is a required property"),
        (
            json!({"action": "core.local"}),
            "'cmd' is a required property",
        ),
        (
            json!({"action": "core.local", "parameters": {"cmd": "date", "foo": 1}}),
            "Additional properties are not allowed ('foo' was unexpected)",
        ),
        (
            json!({"action": "core.local", "parameters": {"cmd": "date", "sudo": true}}),
            "Override of immutable parameter(s) ['sudo'] is unsupported.",
        ),
        (
            json!({"action": "core.local", "parameters": {"cmd": 1000}}),
            "Value \"1000\" must either be a string or None. Got \"int\".",
        ),
    ];
    for (body, message) in cases {
        let resp = post(&server, "/api/v1/executions", body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(faultstring(resp).await, message, "{body}");
    }
    // Nothing was stored for those.
    let all = server.get_json("/api/v1/executions").await;
    assert_eq!(all, json!([]));

    let resp = server
        .client()
        .post(server.url("/api/v1/executions"))
        .header("st2-context", "not json")
        .json(&json!({"action": "core.noop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        faultstring(resp)
            .await
            .contains("Unable to convert st2-context")
    );

    // A rendering failure still stores the execution, failed.
    let resp = post(
        &server,
        "/api/v1/executions",
        json!({"action": "core.local", "parameters": {"cmd": "echo {{ nothing }}"}}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        faultstring(resp).await,
        "Dependency unsatisfied in variable \"nothing\""
    );
    let all = server.get_json("/api/v1/executions").await;
    assert_eq!(all[0]["status"], "failed");
    assert_eq!(
        all[0]["result"]["error"],
        "Dependency unsatisfied in variable \"nothing\""
    );

    // Parameters render with st2kv and action_context.
    server
        .client()
        .put(server.url("/api/v1/keys/who"))
        .json(&json!({"name": "who", "value": "world"}))
        .send()
        .await
        .unwrap();
    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.local", "parameters": {"cmd": "echo {{ st2kv.system.who }} {{ action_context.user }}"}}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["parameters"]["cmd"], "echo world admin");
    assert_eq!(e["result"]["stdout"], "world admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_get_and_cancel() {
    let server = TestServer::builder().start().await;
    let a = request(&server, "core.noop", json!({})).await;
    let b = request(&server, "core.echo", json!({"message": "hello"})).await;
    // The sleeps are the shell's children, and children of its children (a subshell, and
    // another shell), their pids in files: a cancel must stop them all.
    let pid_dir = tempfile::tempdir().unwrap();
    let pid_file = |name: &str| pid_dir.path().join(format!("{name}.pid"));
    let cmd = format!(
        "sleep 300 & echo $! > {}; (sleep 300 & echo $! > {}; sleep 300) & sh -c 'sleep 300 & echo $! > {}; sleep 300' & wait",
        pid_file("child").display(),
        pid_file("subshell").display(),
        pid_file("grandchild").display(),
    );
    let slow = request(&server, "core.local", json!({ "cmd": cmd })).await;
    let a = finished(&server, a["id"].as_str().unwrap()).await;
    let b = finished(&server, b["id"].as_str().unwrap()).await;
    assert_eq!(
        a["result"],
        json!({"failed": false, "succeeded": true, "return_code": 0})
    );
    assert_eq!(b["result"]["stdout"], "hello");

    // What `st2 execution list` sends.
    let resp = server
        .client()
        .get(server.url("/v1/executions/?limit=50&parent=null&sort_desc=True&include_attributes=id%2Caction.ref%2Ccontext.user%2Cstatus%2Cstart_timestamp%2Cend_timestamp"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-total-count"], "3");
    let items: Vec<Value> = resp.json().await.unwrap();
    let ids: Vec<&str> = items.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            slow["id"].as_str().unwrap(),
            b["id"].as_str().unwrap(),
            a["id"].as_str().unwrap()
        ],
        "newest first"
    );
    assert!(
        items[1].get("result").is_none(),
        "include_attributes keeps only what was asked"
    );
    assert_eq!(items[1]["action"]["ref"], "core.echo");

    let asc: Vec<Value> = server
        .get_json("/api/v1/executions?sort_asc=True")
        .await
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(asc[0]["id"], a["id"]);
    let echo = server.get_json("/api/v1/executions?action=core.echo").await;
    assert_eq!(echo.as_array().unwrap().len(), 1);
    let done = server.get_json("/api/v1/executions?status=succeeded").await;
    assert_eq!(done.as_array().unwrap().len(), 2);
    let children = server
        .get_json(&format!(
            "/api/v1/executions?parent={}",
            a["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(children, json!([]));
    let resp = server
        .client()
        .get(server.url("/api/v1/executions?id=zzz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(faultstring(resp).await.contains("not a valid ObjectId"));
    for id in ["1", "000000000000000000000000"] {
        let resp = server
            .client()
            .get(server.url(&format!("/api/v1/executions/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(
            faultstring(resp).await,
            format!("Unable to identify resource with id \"{id}\".")
        );
    }

    // Cancel a running command: it is stopped and ends `canceled`.
    let id = slow["id"].as_str().unwrap();
    let started = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the slow command to be running",
        async || {
            let e = server.get_json(&format!("/api/v1/executions/{id}")).await;
            if e["status"] == "running" {
                return Ok(());
            }
            Err(format!("status {}", e["status"]))
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the command to start its children",
        async || {
            let missing: Vec<&str> = ["child", "subshell", "grandchild"]
                .into_iter()
                .filter(|name| {
                    std::fs::read_to_string(pid_file(name)).is_ok_and(|p| p.trim().is_empty())
                        || !pid_file(name).exists()
                })
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            Err(format!("no pid yet: {missing:?}"))
        },
    )
    .await;
    // test_post_delete: the result names who canceled, at once.
    let canceled_by = json!({"message": "Action canceled by user.", "user": "admin"});
    let resp = server
        .client()
        .delete(server.url(&format!("/api/v1/executions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let canceling: Value = resp.json().await.unwrap();
    assert!(["canceling", "canceled"].contains(&canceling["status"].as_str().unwrap()));
    assert_eq!(canceling["result"], canceled_by);
    assert_eq!(canceling["context"]["cancelled_by"], "admin");
    let canceled = finished(&server, id).await;
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["result"], canceled_by);
    assert_eq!(canceled["context"]["cancelled_by"], "admin");
    assert!(started.elapsed() < Duration::from_secs(10));
    for name in ["child", "subshell", "grandchild"] {
        let sleep_pid = std::fs::read_to_string(pid_file(name)).unwrap();
        let proc_dir = format!("/proc/{}", sleep_pid.trim());
        eventually(
            Duration::from_secs(5),
            &format!("the canceled command's {name} sleep to be killed"),
            async || {
                // Gone, or a zombie waiting for init to reap it.
                match std::fs::read_to_string(format!("{proc_dir}/stat")) {
                    Err(_) => Ok(()),
                    Ok(stat) if stat.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')) => {
                        Ok(())
                    }
                    Ok(stat) => Err(format!("still alive: {stat}")),
                }
            },
        )
        .await;
    }
    // test_post_delete_duplicate: a second cancel answers the canceled execution.
    let resp = server
        .client()
        .delete(server.url(&format!("/api/v1/executions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let again: Value = resp.json().await.unwrap();
    assert_eq!(again["id"], id);
    assert_eq!(again["status"], "canceled");
    assert_eq!(again["result"], canceled_by);
    // Another completed execution cannot be cancelled: 200 with a faultstring, as StackStorm
    // answers.
    let resp = server
        .client()
        .delete(server.url(&format!("/api/v1/executions/{}", a["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        faultstring(resp).await,
        "Action cannot be canceled. State = succeeded."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_actions_results_errors_traps_deadlines_and_datastore() {
    let server = TestServer::builder()
        .examples()
        .action("fails", "guest_error", "parameters:\n  kind: {type: string}")
        .action("panics", "panic", "")
        .action("spins", "loop_forever", "limits: {timeout_ms: 200}")
        .action(
            "kv",
            "kv_probe",
            "parameters:\n  op: {type: string, required: true}\n  key: {type: string, required: true}\n  value: {type: string}\ndatastore: {read: true, write: true, prefix: \"t.\"}",
        )
        .start()
        .await;
    let run = |action: &'static str, params: Value| {
        let server = &server;
        async move {
            let resp = post(
                server,
                "/api/v1/executions?wait=30",
                json!({"action": action, "parameters": params}),
            )
            .await;
            assert_eq!(resp.status(), 201);
            resp.json::<Value>().await.unwrap()
        }
    };

    let greet = run("demo.greet", json!({"name": "Ada"})).await;
    assert_eq!(greet["status"], "succeeded");
    assert_eq!(greet["result"]["result"], json!({"message": "Hello, Ada!"}));
    assert_eq!(
        greet["result"]["logs"][0]["message"], "Hello, Ada!",
        "captured logs are kept"
    );
    assert_eq!(greet["runner"]["name"], "wasm");

    let fails = run("t.fails", json!({"kind": "denied"})).await;
    assert_eq!(fails["status"], "failed");
    assert_eq!(fails["result"]["error_kind"], "guest-error");
    let error = fails["result"]["error"].as_str().unwrap();
    assert!(
        error.contains("t.fails") && error.contains("fixture guest error: denied"),
        "{error}"
    );

    let panics = run("t.panics", json!({})).await;
    assert_eq!(panics["status"], "failed");
    assert_eq!(panics["result"]["error_kind"], "trap");
    let error = panics["result"]["error"].as_str().unwrap();
    assert!(
        error.contains("t.panics") && error.contains("fixture panic"),
        "{error}"
    );
    assert!(
        panics["result"]["stderr"]
            .as_str()
            .unwrap()
            .contains("panicked at")
    );

    let spins = run("t.spins", json!({})).await;
    assert_eq!(spins["status"], "timeout", "{spins}");
    assert_eq!(spins["result"]["error_kind"], "timeout");
    assert!(
        spins["result"]["error"]
            .as_str()
            .unwrap()
            .contains("t.spins")
    );

    // The plugin's datastore is the API's datastore.
    let set = run(
        "t.kv",
        json!({"op": "set", "key": "t.color", "value": "blue"}),
    )
    .await;
    assert_eq!(set["status"], "succeeded", "{set}");
    let key = server.get_json("/api/v1/keys/t.color").await;
    assert_eq!(key["value"], "blue");
    server
        .client()
        .put(server.url("/api/v1/keys/t.color"))
        .json(&json!({"name": "t.color", "value": "green"}))
        .send()
        .await
        .unwrap();
    let got = run("t.kv", json!({"op": "get", "key": "t.color"})).await;
    assert_eq!(got["result"]["result"], json!({"result": "green"}));
    let denied = run("t.kv", json!({"op": "get", "key": "other"})).await;
    assert_eq!(denied["status"], "failed");

    // Another action still serves after all of that.
    assert_eq!(
        run("demo.greet", json!({"name": "Bo"})).await["status"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_http_and_a_disabled_core_local() {
    let server = TestServer::builder().without_core_local().start().await;
    let resp = post(
        &server,
        "/api/v1/executions",
        json!({"action": "core.local", "parameters": {"cmd": "date"}}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        faultstring(resp).await,
        "Unable to execute. Action \"core.local\" is disabled."
    );
    let action = server.get_json("/api/v1/actions/core.local").await;
    assert_eq!(action["enabled"], false);

    // core.http against this server's own API.
    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.http", "parameters": {
            "url": server.url("/api/v1/actions/core.noop"),
            "headers": {"St2-Api-Key": server.key},
        }}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["result"]["status_code"], 200);
    assert_eq!(e["result"]["parsed"], true);
    assert_eq!(e["result"]["body"]["ref"], "core.noop");
    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.http", "parameters": {"url": server.url("/api/v1/nothing")}}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["status"], "failed");
    assert_eq!(e["result"]["status_code"], 404);
}

/// The `ref` of each item of a listing.
fn refs(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| a["ref"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_runnertypes_and_keys() {
    let server = TestServer::builder().examples().start().await;
    let actions = server.get_json("/api/v1/actions").await;
    let refs = refs(&actions);
    for r in [
        "core.echo",
        "core.http",
        "core.local",
        "core.noop",
        "demo.counter",
        "demo.greet",
    ] {
        assert!(refs.contains(&r), "{refs:?}");
    }
    let local = server.get_json("/api/v1/actions/core.local").await;
    assert_eq!(local["uid"], "action:core:local");
    assert_eq!(local["parameters"]["cmd"]["type"], "string");
    let demo = server.get_json("/api/v1/actions?pack=demo").await;
    assert_eq!(demo.as_array().unwrap().len(), 2);
    // What `st2 run` asks: exactly one runner, with typed runner parameters.
    let runners = server
        .get_json("/v1/runnertypes/?name=local-shell-cmd")
        .await;
    assert_eq!(runners.as_array().unwrap().len(), 1);
    assert_eq!(
        runners[0]["runner_parameters"]["timeout"]["type"],
        "integer"
    );
    let resp = server
        .client()
        .get(server.url("/api/v1/actions/nope.nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let client = server.client();
    let put = client
        .put(server.url("/api/v1/keys/color"))
        .json(&json!({"name": "color", "scope": "system", "user": null, "value": "blue"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let key: Value = put.json().await.unwrap();
    assert_eq!(key["uid"], "key_value_pair:st2kv.system:color");
    assert_eq!(key["scope"], "st2kv.system");
    let got = server
        .get_json("/api/v1/keys/color?decrypt=false&scope=system")
        .await;
    assert_eq!(got["value"], "blue");
    let listed = server.get_json("/api/v1/keys?prefix=col").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let secret = client
        .put(server.url("/api/v1/keys/pw"))
        .json(&json!({"name": "pw", "value": "x", "secret": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        secret.status(),
        200,
        "secrets: tests/integration/datastore.rs"
    );
    let deleted = client
        .delete(server.url("/api/v1/keys/color"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let resp = client
        .get(server.url("/api/v1/keys/color"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        faultstring(resp).await,
        "KeyValuePair with name: color and scope: st2kv.system not found in db."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_render_parameters_from_the_trigger_and_fail_cleanly() {
    let ok = (
        "say".to_owned(),
        "name: say\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: hook\ncriteria:\n  trigger.body.kind:\n    type: equals\n    pattern: hello\naction:\n  ref: core.echo\n  parameters:\n    message: \"hi {{ trigger.body.who }}\"\n".to_owned(),
    );
    let broken = (
        "broken".to_owned(),
        "name: broken\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: hook\ncriteria:\n  trigger.body.kind:\n    type: equals\n    pattern: hello\naction:\n  ref: core.echo\n  parameters:\n    message: \"{{ nope }}\"\n".to_owned(),
    );
    let missing = (
        "missing".to_owned(),
        "name: missing\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: hook\naction:\n  ref: nowhere.nothing\n".to_owned(),
    );
    let server = TestServer::builder()
        .rules([ok, broken, missing, webhook_rule("other", "elsewhere")])
        .start()
        .await;
    let resp = post(
        &server,
        "/api/v1/webhooks/hook",
        json!({"kind": "hello", "who": "ada"}),
    )
    .await;
    assert_eq!(resp.status(), 202);
    let enforcements = eventually(
        Duration::from_secs(10),
        "three rule enforcements",
        async || {
            let found = server.get_json("/api/v1/ruleenforcements").await;
            if found.as_array().unwrap().len() == 3 {
                return Ok(found);
            }
            Err(found.to_string())
        },
    )
    .await;
    let by_rule = |r: &str| {
        enforcements
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["rule"]["ref"] == r)
            .unwrap()
            .clone()
    };
    let say = by_rule("t.say");
    assert_eq!(say["status"], "succeeded");
    let execution = finished(&server, say["execution_id"].as_str().unwrap()).await;
    assert_eq!(execution["parameters"], json!({"message": "hi ada"}));
    assert_eq!(execution["result"]["stdout"], "hi ada");
    assert_eq!(execution["context"]["rule"]["name"], "say");
    assert_eq!(execution["trigger"]["type"], "core.st2.webhook");

    let broken = by_rule("t.broken");
    assert_eq!(broken["status"], "failed");
    assert_eq!(
        broken["failure_reason"],
        "Dependency unsatisfied in variable \"nope\""
    );
    let failed = server
        .get_json(&format!(
            "/api/v1/executions/{}",
            broken["execution_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(failed["status"], "failed");

    let missing = by_rule("t.missing");
    assert_eq!(missing["status"], "failed");
    assert_eq!(
        missing["failure_reason"],
        "Action \"nowhere.nothing\" doesn't exist"
    );
    assert!(missing.get("execution_id").is_none());

    // A payload the criteria reject requests nothing; a rule without criteria requests one.
    for (url, body, expected) in [
        ("hook", json!({"kind": "bye", "n": 1}), 0),
        ("elsewhere", json!({"kind": "bye", "n": 2}), 1),
    ] {
        let n = body["n"].clone();
        let resp = post(&server, &format!("/api/v1/webhooks/{url}"), body).await;
        assert_eq!(resp.status(), 202);
        let instance = eventually(
            Duration::from_secs(10),
            &format!("the trigger instance of webhook n={n} to be processed"),
            async || {
                let newest = server
                    .get_json("/api/v1/triggerinstances?limit=1&trigger_type=core.st2.webhook")
                    .await[0]
                    .clone();
                if newest["payload"]["body"]["n"] == n && newest["status"] == "processed" {
                    return Ok(newest);
                }
                Err(format!("newest instance: {newest}"))
            },
        )
        .await;
        let id = instance["id"].as_str().unwrap();
        let caused = server
            .get_json(&format!("/api/v1/executions?trigger_instance={id}"))
            .await;
        assert_eq!(
            caused.as_array().unwrap().len(),
            expected,
            "{url}: {caused}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_executions_dispatch_an_action_trigger_that_rules_can_follow() {
    let follow = (
        "follow".to_owned(),
        "name: follow\ntrigger:\n  type: core.st2.generic.actiontrigger\ncriteria:\n  trigger.action_ref:\n    type: equals\n    pattern: core.local\n  trigger.status:\n    type: equals\n    pattern: failed\naction:\n  ref: core.echo\n  parameters:\n    message: \"{{ trigger.action_ref }} failed with {{ trigger.result.return_code }}\"\n".to_owned(),
    );
    let server = TestServer::builder().rules([follow]).start().await;
    let failed = request(&server, "core.local", json!({"cmd": "exit 4"})).await;
    let failed_id = failed["id"].as_str().unwrap().to_owned();
    let echo = eventually(
        Duration::from_secs(10),
        "the rule's follow-up core.echo execution",
        async || {
            let echoes = server.get_json("/api/v1/executions?action=core.echo").await;
            if let Some(e) = echoes.as_array().unwrap().first() {
                return Ok(e["id"].as_str().unwrap().to_owned());
            }
            Err(format!("no follow-up: {echoes}"))
        },
    )
    .await;
    let followed = finished(&server, &echo).await;
    assert_eq!(followed["result"]["stdout"], "core.local failed with 4");
    assert_eq!(
        followed["trigger_instance"]["payload"]["execution_id"],
        failed_id.as_str()
    );
    let instances = server
        .get_json("/api/v1/triggerinstances?trigger_type=core.st2.generic.actiontrigger")
        .await;
    // The failed command's, then the echo's (which no rule follows).
    let statuses: Vec<&str> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["payload"]["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"failed"), "{instances}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_parameters_never_reach_a_trigger_instance() {
    let server = TestServer::builder().start().await;
    let password = "hunter2-secret-value";
    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.http", "parameters": {
            "url": server.url("/api/v1/actions/core.noop"),
            "headers": {"St2-Api-Key": server.key},
            "username": "ada",
            "password": password,
        }}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["parameters"]["password"], "********");
    let id = e["id"].as_str().unwrap().to_owned();
    let instance = eventually(
        Duration::from_secs(10),
        &format!("the action trigger of execution {id}"),
        async || {
            let instances = server
                .get_json("/api/v1/triggerinstances?trigger_type=core.st2.generic.actiontrigger")
                .await;
            if let Some(t) = instances
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["payload"]["execution_id"] == id.as_str())
            {
                return Ok(t.clone());
            }
            Err(format!("no action trigger: {instances}"))
        },
    )
    .await;
    assert_eq!(instance["payload"]["parameters"]["password"], "********");
    assert_eq!(instance["payload"]["parameters"]["username"], "ada");
    // Nowhere in any stored trigger instance.
    let all = server.get_json("/api/v1/triggerinstances?limit=-1").await;
    assert!(!all.to_string().contains(password), "{all}");
}

/// Runs `core.http` on `url` (redirects followed), which the policy must refuse.
async fn assert_refused(server: &TestServer, url: &str) {
    let resp = post(
        server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.http", "parameters": {"url": url, "allow_redirects": true}}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["status"], "failed", "{url}: {e}");
    assert!(
        e["result"]["error"]
            .as_str()
            .unwrap()
            .contains("is not allowed by this server's core.http policy"),
        "{url}: {e}"
    );
}

/// A one-shot HTTP server on `ip` that redirects every request to `location`.
async fn redirector(ip: &str, location: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_http_connects_only_where_the_policy_allows() {
    // The default policy refuses cloud metadata and link-local addresses, before connecting.
    let server = TestServer::builder().start().await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://2852039166/", // 169.254.169.254 as one number
    ] {
        assert_refused(&server, url).await;
    }

    // An operator's list: no loopback but 127.0.0.2, by name, literally, or through a redirect.
    let policy =
        stormhook_automation::actions::http::HttpPolicy::new(&["loopback"], &["127.0.0.2"])
            .unwrap();
    let server = TestServer::builder().http_policy(policy).start().await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let through_redirect = redirector(
        "127.0.0.2",
        format!("http://127.0.0.1:{port}/api/v1/actions"),
    )
    .await;
    for url in [
        server.url("/api/v1/actions"),
        format!("http://localhost:{port}/api/v1/actions"),
        through_redirect,
    ] {
        assert_refused(&server, &url).await;
    }
    // The allowed address is reached (the redirect answers 302, which is not followed here).
    let allowed = redirector("127.0.0.2", "http://example.invalid/".into()).await;
    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.http", "parameters": {"url": allowed}}),
    )
    .await;
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["result"]["status_code"], 302, "{e}");
}

/// The README's safe pattern for `core.local`: trigger data goes through `env`, never into
/// `cmd`, so shell syntax in a webhook body is data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_local_takes_trigger_data_through_env_as_data() {
    let safe = (
        "safe".to_owned(),
        "name: safe\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: deploy\naction:\n  ref: core.local\n  parameters:\n    cmd: 'printf \"%s\" \"$REF\"'\n    env:\n      REF: \"{{ trigger.body.ref }}\"\n".to_owned(),
    );
    let server = TestServer::builder().rules([safe]).start().await;
    let hostile = "main\"; echo pwned; \"$(echo pwned)`echo pwned`";
    let resp = post(&server, "/api/v1/webhooks/deploy", json!({"ref": hostile})).await;
    assert_eq!(resp.status(), 202);
    let execution = eventually(
        Duration::from_secs(10),
        "the rule's core.local execution",
        async || {
            let found = server
                .get_json("/api/v1/executions?action=core.local")
                .await;
            if let Some(e) = found.as_array().unwrap().first() {
                return Ok(e["id"].as_str().unwrap().to_owned());
            }
            Err(format!("no execution: {found}"))
        },
    )
    .await;
    let e = finished(&server, &execution).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["result"]["stdout"], hostile);
}

/// A run a stop cut short is `abandoned`, unless its action says `retry_if_abandoned: true`:
/// then it runs again, up to `MAX_ABANDONED_RUNS` cut-short runs in all (counted in
/// `context.abandoned_runs`).
#[tokio::test]
async fn a_run_cut_short_is_retried_only_when_the_action_opts_in() {
    let actions = |b: stormhook_tests::TestServerBuilder| {
        b.action("again", "noop_action", "retry_if_abandoned: true")
            .action("once", "noop_action", "")
    };
    // Executions as a stop leaves them: `running`, on a node that is gone.
    let first = actions(TestServer::builder()).start().await;
    let mut left = Vec::new();
    for (action, earlier_cut_short) in [("t.again", 0), ("t.once", 0), ("t.again", 2)] {
        let id = request(&first, action, json!({})).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        finished(&first, &id).await;
        let mut execution = stormhook_storage::Store::execution(first.store.as_ref(), &id)
            .await
            .unwrap()
            .unwrap();
        execution.status = stormhook_storage::ExecutionStatus::Running;
        execution.end_timestamp = None;
        execution.document["status"] = json!("running");
        execution.document["result"] = json!({});
        if earlier_cut_short > 0 {
            execution.document["context"]["abandoned_runs"] = json!(earlier_cut_short);
        }
        left.push(execution);
    }
    drop(first);
    let server = actions(TestServer::builder())
        .preload(left.clone())
        .start()
        .await;
    let again = finished(&server, &left[0].id).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["context"]["abandoned_runs"], 1, "{again}");
    assert!(
        statuses(&again).ends_with(&["requested", "scheduled", "running", "succeeded"]),
        "{again}"
    );
    let once = finished(&server, &left[1].id).await;
    assert_eq!(once["status"], "abandoned", "{once}");
    assert!(
        once["result"]["error"]
            .as_str()
            .unwrap()
            .contains("not run again"),
        "{once}"
    );
    // The third cut-short run is the last: abandoned even though the action opts in.
    let capped = finished(&server, &left[2].id).await;
    assert_eq!(capped["status"], "abandoned", "{capped}");
}

/// Sends `method` to `path` with a JSON body.
async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> reqwest::Response {
    server
        .client()
        .request(method, server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Derived from test_executions.py: test_re_run_success, test_re_run_secret_parameter,
/// test_re_run_failure_execution_doesnt_exist, test_re_run_failure_parameter_override_invalid_type,
/// test_re_run_with_incorrect_delay, test_re_run_failure_tasks_option_for_non_workflow and
/// the test_re_run_workflow_failure_* cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_run_repeats_an_execution_with_overrides() {
    let server = TestServer::builder().start().await;
    let original = request(
        &server,
        "core.local",
        json!({"cmd": "echo one", "sudo_password": "s3cret"}),
    )
    .await;
    let id = original["id"].as_str().unwrap();
    finished(&server, id).await;

    // No overrides: the same parameters, the secret one masked in the answer.
    let resp = post(
        &server,
        &format!("/api/v1/executions/{id}/re_run"),
        json!({}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let again: Value = resp.json().await.unwrap();
    assert_ne!(again["id"], original["id"]);
    assert_eq!(again["status"], "requested");
    assert_eq!(
        again["parameters"],
        json!({"cmd": "echo one", "sudo_password": "********"})
    );
    assert_eq!(again["context"]["re-run"], json!({"ref": id}));
    assert_eq!(again["context"]["user"], "admin");
    let again_id = again["id"].as_str().unwrap();
    let shown = server
        .get_json(&format!("/api/v1/executions/{again_id}?show_secrets=true"))
        .await;
    assert_eq!(shown["parameters"]["sudo_password"], "s3cret");
    assert_eq!(finished(&server, again_id).await["result"]["stdout"], "one");

    // Overrides update the original's parameters (a re-run of a re-run keeps the secret).
    let resp = post(
        &server,
        &format!("/api/v1/executions/{again_id}/re_run?show_secrets=true"),
        json!({"parameters": {"cmd": "echo two"}, "delay": 0}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let two: Value = resp.json().await.unwrap();
    assert_eq!(
        two["parameters"],
        json!({"cmd": "echo two", "sudo_password": "s3cret"})
    );
    assert_eq!(
        finished(&server, two["id"].as_str().unwrap()).await["result"]["stdout"],
        "two"
    );
    // `no_merge`: only those given; and the `/actionexecutions` alias.
    let resp = post(
        &server,
        &format!("/api/v1/actionexecutions/{id}/re_run?no_merge=true"),
        json!({"parameters": {"cmd": "echo three"}}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let three: Value = resp.json().await.unwrap();
    assert_eq!(three["parameters"], json!({"cmd": "echo three"}));

    let resp = post(&server, "/api/v1/executions/doesntexist/re_run", json!({})).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        faultstring(resp).await,
        "Unable to identify resource with id \"doesntexist\"."
    );
    for (body, message) in [
        (
            json!({"parameters": {"cmd": 1000}}),
            "Value \"1000\" must either be a string or None. Got \"int\".",
        ),
        (
            json!({"parameters": {"nope": 1}}),
            "Additional properties are not allowed ('nope' was unexpected)",
        ),
        (json!({"parameters": "x"}), "'x' is not of type 'object'"),
        (
            json!({"delay": "sudo apt -y upgrade winson"}),
            "'sudo apt -y upgrade winson' is not of type 'integer'",
        ),
        (json!({"tasks": "x"}), "'x' is not of type 'array'"),
        (
            json!({"tasks": ["x"], "parameters": {"cmd": "date"}}),
            "Parameters override is not supported when re-running task(s) for a workflow.",
        ),
        (
            json!({"tasks": ["x"], "reset": ["y"]}),
            "List of tasks to reset does not match the tasks to rerun.",
        ),
        (
            json!({"tasks": ["x"]}),
            "Task option is only supported for Orquesta workflows.",
        ),
        (
            json!({"delay": -1}),
            "ValidationError (LiveActionDB:None) (Integer value is too small: ['delay'])",
        ),
    ] {
        let resp = post(
            &server,
            &format!("/api/v1/executions/{id}/re_run"),
            body.clone(),
        )
        .await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(faultstring(resp).await, message, "{body}");
    }
}

/// StackStorm's `delay`: the execution is stored `delayed` with its `delay`, runs once that
/// passed (logged `requested, delayed, scheduled, running, ...`), and is canceled at once while
/// it waits. Derived from test_executions.py: test_re_run_with_delay,
/// test_re_run_with_incorrect_delay, test_re_run_with_very_large_delay,
/// test_re_run_delayed_aciton_with_no_delay (a POST of LIVE_ACTION_DELAY) and test_post_delete
/// / test_post_delete_duplicate on a delayed execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_execution_waits_its_delay_then_runs() {
    let server = TestServer::builder().start().await;
    // LIVE_ACTION_DELAY: 201, `delayed`, with its delay.
    let resp = post(
        &server,
        "/api/v1/executions",
        json!({"action": "core.local", "parameters": {"cmd": "echo later"}, "delay": 1500}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let delayed: Value = resp.json().await.unwrap();
    assert_eq!(delayed["status"], "delayed", "{delayed}");
    assert_eq!(delayed["delay"], 1500);
    assert_eq!(delayed["liveaction"]["delay"], 1500);
    let id = delayed["id"].as_str().unwrap();
    let listed = server.get_json("/api/v1/executions?status=delayed").await;
    assert_eq!(listed[0]["id"], id, "{listed}");
    let done = finished(&server, id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["stdout"], "later");
    assert_eq!(
        statuses(&done),
        ["requested", "delayed", "scheduled", "running", "succeeded"]
    );
    let start = stormhook_storage::ids::parse_time(done["start_timestamp"].as_str().unwrap());
    let scheduled =
        stormhook_storage::ids::parse_time(done["log"][2]["timestamp"].as_str().unwrap());
    let waited = scheduled.unwrap() - start.unwrap();
    assert!(
        waited >= chrono::Duration::milliseconds(1500),
        "scheduled after {waited}"
    );

    // test_re_run_with_delay: the re-run's own delay.
    let resp = post(
        &server,
        &format!("/api/v1/executions/{id}/re_run"),
        json!({"delay": 100}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let again: Value = resp.json().await.unwrap();
    assert_eq!(again["delay"], 100);
    assert_eq!(
        finished(&server, again["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    // test_re_run_delayed_aciton_with_no_delay: the original's delay is not inherited.
    let resp = post(
        &server,
        &format!("/api/v1/executions/{id}/re_run"),
        json!({"delay": 0}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let now: Value = resp.json().await.unwrap();
    assert!(now.get("delay").is_none(), "{now}");
    assert_ne!(now["status"], "delayed", "{now}");

    // test_re_run_with_very_large_delay: accepted, and simply not due.
    let resp = post(
        &server,
        &format!("/api/v1/executions/{id}/re_run"),
        json!({"delay": 10_000_000_000u64}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let far: Value = resp.json().await.unwrap();
    assert_eq!(far["status"], "delayed");
    let far_id = far["id"].as_str().unwrap();
    let path = format!("/api/v1/executions/{far_id}");
    // `delayed` is not a status PUT may set.
    let resp = send(
        &server,
        reqwest::Method::PUT,
        &path,
        json!({"status": "delayed"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    // test_post_delete on a delayed execution: canceled at once, with StackStorm's result,
    // and a second DELETE answers it as it is.
    for _ in 0..2 {
        let resp = server
            .client()
            .delete(server.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let canceled: Value = resp.json().await.unwrap();
        assert_eq!(canceled["status"], "canceled", "{canceled}");
        assert_eq!(
            canceled["result"],
            json!({"message": "Action canceled by user.", "user": "admin"})
        );
    }
    assert_eq!(
        statuses(&server.get_json(&path).await),
        ["requested", "delayed", "canceled"]
    );

    // test_re_run_with_incorrect_delay, and the same on a POST.
    for body in [
        json!({"action": "core.local", "parameters": {"cmd": "date"}, "delay": "soon"}),
        json!({"action": "core.local", "parameters": {"cmd": "date"}, "delay": 1.5}),
    ] {
        let resp = post(&server, "/api/v1/executions", body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert!(
            faultstring(resp)
                .await
                .ends_with("is not of type 'integer'"),
            "{body}"
        );
    }
}

/// A rule-triggered execution's `trigger` is the trigger `GET /triggers` lists (StackStorm's
/// execution copies the rule's `TriggerDB`: id, name, pack, ref, uid, type, parameters), so the
/// `trigger` filter (`trigger.name`, `SUPPORTED_FILTERS` of `execution_views.py`) finds it by
/// that name: a rule-made trigger's, and a stored one's once it exists (`POST /triggers` with
/// the rule's type and parameters, which the rule then uses, as StackStorm's rules use the
/// `TriggerDB` of their type and parameters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_executions_trigger_is_the_listed_trigger() {
    let server = TestServer::builder()
        .rules([webhook_rule("greet", "hook")])
        .start()
        .await;
    let fire = async || {
        let before = server.get_json("/api/v1/executions?rule=greet").await;
        let before = before.as_array().unwrap().len();
        let resp = server
            .client()
            .post(server.url("/api/v1/webhooks/hook"))
            .json(&json!({"n": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        eventually(
            Duration::from_secs(10),
            "the rule's execution",
            async || {
                let found = server.get_json("/api/v1/executions?rule=greet").await;
                let found = found.as_array().unwrap();
                if found.len() > before {
                    return Ok(found[0].clone());
                }
                Err("none yet".to_owned())
            },
        )
        .await
    };
    let listed = |name: &str| {
        let name = name.to_owned();
        let server = &server;
        async move {
            let all = server.get_json("/api/v1/triggers").await;
            all.as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name.as_str())
                .cloned()
        }
    };
    let by_name = async |name: &str| -> Vec<Value> {
        server
            .get_json(&format!("/api/v1/executions?trigger={name}"))
            .await
            .as_array()
            .unwrap()
            .clone()
    };

    let made = fire().await;
    let trigger = &made["trigger"];
    let name = trigger["name"].as_str().unwrap();
    assert_eq!(listed(name).await.as_ref(), Some(trigger), "{trigger}");
    for field in ["id", "name", "pack", "ref", "uid", "type", "parameters"] {
        assert!(trigger.get(field).is_some(), "{field}: {trigger}");
    }
    assert_eq!(by_name(name).await[0]["id"], made["id"]);

    // A trigger stored with the rule's type and parameters: the rule now uses it.
    let resp = server
        .client()
        .post(server.url("/api/v1/triggers"))
        .json(&json!({"name": "mine", "pack": "t", "type": "core.st2.webhook", "parameters": {"url": "hook"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let stored: Value = resp.json().await.unwrap();
    let then = fire().await;
    assert_eq!(then["trigger"], stored, "{}", then["trigger"]);
    assert_eq!(then["trigger"]["ref"], "t.mine");
    assert_eq!(then["trigger_instance"]["trigger"], "t.mine");
    assert_eq!(listed("mine").await.as_ref(), Some(&stored));
    let found = by_name("mine").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], then["id"]);
    assert_eq!(
        by_name(name).await.len(),
        1,
        "the earlier one keeps its trigger"
    );
}

/// Derived from test_executions.py: test_put_status_and_result, test_put_bad_state,
/// test_put_bad_result, test_put_bad_property, test_put_status_to_completed_execution,
/// test_put_pause_unsupported, test_put_resume_unsupported and
/// test_get_one_max_result_size_query_parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_sets_status_and_result_with_stackstorms_checks() {
    let server = TestServer::builder().start().await;
    let slow = request(&server, "core.local", json!({"cmd": "sleep 60"})).await;
    let id = slow["id"].as_str().unwrap();
    let path = format!("/api/v1/executions/{id}");
    let statuses = "['requested', 'scheduled', 'delayed', 'running', 'succeeded', 'failed', 'timeout', 'abandoned', 'canceling', 'canceled', 'pending', 'pausing', 'paused', 'resuming']";
    for (body, message) in [
        (
            json!({"status": "married"}),
            format!("'married' is not one of {statuses}"),
        ),
        (
            json!({"result": "foobar"}),
            "'foobar' is not of type 'object'".to_owned(),
        ),
        (
            json!({"status": "abandoned", "foo": "bar"}),
            "Additional properties are not allowed ('foo' was unexpected)".to_owned(),
        ),
    ] {
        let resp = send(&server, reqwest::Method::PUT, &path, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(faultstring(resp).await, message, "{body}");
    }
    eventually(Duration::from_secs(10), "the sleep to run", async || {
        let e = server.get_json(&path).await;
        if e["status"] == "running" {
            return Ok(());
        }
        Err(format!("status {}", e["status"]))
    })
    .await;
    // No runner here can pause.
    let liveaction = slow["liveaction"]["id"].as_str().unwrap();
    for (status, verb) in [
        ("pausing", "pause"),
        ("paused", "pause"),
        ("resuming", "resume"),
    ] {
        let resp = send(
            &server,
            reqwest::Method::PUT,
            &path,
            json!({"status": status}),
        )
        .await;
        assert_eq!(resp.status(), 400);
        assert_eq!(
            faultstring(resp).await,
            format!(
                "Failed updating execution. Unable to {verb} liveaction \"{liveaction}\" because it is not supported by the \"local-shell-cmd\" runner."
            )
        );
    }
    // Its own status changes nothing.
    let resp = send(
        &server,
        reqwest::Method::PUT,
        &path,
        json!({"status": "running"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "running");

    let result = json!({"fooo": "a".repeat(1000)});
    let size = result.to_string().len();
    let resp = send(
        &server,
        reqwest::Method::PUT,
        &path,
        json!({"status": "succeeded", "result": result}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let put: Value = resp.json().await.unwrap();
    assert_eq!(put["status"], "succeeded");
    assert_eq!(put["result"], result);
    assert_eq!(put["result_size"], size);
    // It stays as set: the run it stopped does not record its own end.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = server.get_json(&path).await;
    assert_eq!(got["status"], "succeeded");
    assert_eq!(got["result"], result);

    let resp = send(
        &server,
        reqwest::Method::PUT,
        &path,
        json!({"status": "abandoned"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        faultstring(resp).await,
        "Execution is already in completed state."
    );
    let resp = send(
        &server,
        reqwest::Method::PUT,
        "/api/v1/executions/000000000000000000000000",
        json!({"status": "failed"}),
    )
    .await;
    assert_eq!(resp.status(), 404);

    // max_result_size: the result only when it is not larger.
    for (max, shown) in [(size + 1, true), (size, true), (size - 1, false)] {
        let got = server
            .get_json(&format!("{path}?max_result_size={max}"))
            .await;
        assert_eq!(got["result_size"], size);
        assert_eq!(got.get("result").is_some(), shown, "max {max}");
    }
    for (max, message) in [
        (
            "-100".to_owned(),
            "max_result_size must be a positive number",
        ),
        (
            ((14 << 20) + 1).to_string(),
            "max_result_size query parameter must be smaller than 14 MB",
        ),
    ] {
        let resp = server
            .client()
            .get(server.url(&format!("{path}?max_result_size={max}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(faultstring(resp).await, message);
    }

    // PUT canceled cancels (the alias serves PUT too).
    let other = request(&server, "core.local", json!({"cmd": "sleep 60"})).await;
    let other_id = other["id"].as_str().unwrap();
    let resp = send(
        &server,
        reqwest::Method::PUT,
        &format!("/api/v1/actionexecutions/{other_id}"),
        json!({"status": "canceled"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let canceled: Value = resp.json().await.unwrap();
    assert!(["canceling", "canceled"].contains(&canceled["status"].as_str().unwrap()));
    assert_eq!(
        canceled["result"],
        json!({"message": "Action canceled by user.", "user": "admin"})
    );
    assert_eq!(finished(&server, other_id).await["status"], "canceled");
}

/// Derived from test_executions.py (test_get_all, test_get_query,
/// test_get_all_invalid_offset_too_large) and st2web's history page: empty filters are
/// ignored, `timestamp` ranges sort by their direction, the advanced `filter`, `web_url`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_filters_as_st2web_sends_them() {
    let server = TestServer::builder()
        .settings(stormhook_server::Settings {
            webui_url: "https://st2web.example/".into(),
            ..Default::default()
        })
        .rules([
            webhook_rule("greet", "hook"),
            (
                "custom".to_owned(),
                "name: custom\ntrigger:\n  type: mine.event\naction:\n  ref: core.noop\n"
                    .to_owned(),
            ),
        ])
        .start()
        .await;
    let a = request(&server, "core.noop", json!({})).await;
    let b = request(&server, "core.echo", json!({"message": "hello"})).await;
    let c = request(&server, "core.noop", json!({})).await;
    let [a, b, c] = [a, b, c].map(|e| e["id"].as_str().unwrap().to_owned());
    for id in [&a, &b, &c] {
        finished(&server, id).await;
    }
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = server
        .get_json("/api/v1/executions?status=&action=&rule=&runner=&trigger_type=&user=&parent=&timestamp_gt=&id=&filter=")
        .await;
    assert_eq!(ids(&all), [c.clone(), b.clone(), a.clone()]);
    assert_eq!(
        all[0]["web_url"],
        format!("https://st2web.example/#/history/{c}/general")
    );

    let start = |id: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()["start_timestamp"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (ta, tb, tc) = (start(&a), start(&b), start(&c));
    let up = server
        .get_json(&format!("/api/v1/executions?timestamp={ta}..{tc}"))
        .await;
    assert_eq!(
        ids(&up),
        [a.clone(), b.clone(), c.clone()],
        "a..b is oldest first"
    );
    let down = server
        .get_json(&format!(
            "/api/v1/executions?timestamp={tc}..{ta}&sort_asc=True"
        ))
        .await;
    assert_eq!(
        ids(&down),
        [c.clone(), b.clone(), a.clone()],
        "b..a is newest first"
    );
    let inner = server
        .get_json(&format!("/api/v1/executions?timestamp={tb}..{tc}"))
        .await;
    assert_eq!(
        ids(&inner),
        [b.clone(), c.clone()],
        "the range is inclusive"
    );
    let one = server
        .get_json(&format!("/api/v1/executions?timestamp={tb}"))
        .await;
    assert_eq!(ids(&one), [b.as_str()]);

    let echo = server
        .get_json("/api/v1/executions?filter=action.ref:core.echo")
        .await;
    assert_eq!(ids(&echo), [b.as_str()]);
    let mine = server
        .get_json(
            "/api/v1/executions?filter=status:succeeded%20context.user:admin%20runner.name:noop",
        )
        .await;
    assert_eq!(ids(&mine), [c.clone(), a.clone()]);
    let none = server
        .get_json("/api/v1/executions?filter=context.user:nobody")
        .await;
    assert_eq!(none, json!([]));
    let manual = server.get_json("/api/v1/executions?rule=null").await;
    assert_eq!(ids(&manual).len(), 3);

    for (query, message) in [
        ("filter=foo", "invalid format for filter \"foo\""),
        ("filter=foo:bar", "Cannot resolve field \"foo\""),
        (
            "filter=status.x:y",
            "Cannot resolve subfield or operator x on the field status",
        ),
        (
            "timestamp=yesterday..today",
            "Datetime value does not match expected format.",
        ),
        (
            "offset=2141564789454123457895412237483648&limit=1",
            "Offset \"2141564789454123457895412237483648\" specified is more than 32-bit int",
        ),
    ] {
        let resp = server
            .client()
            .get(server.url(&format!("/api/v1/executions?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        assert_eq!(faultstring(resp).await, message, "{query}");
    }

    // A rule's execution: `rule` matches the rule's name (not its ref), `trigger_type` the
    // type's name, and the execution carries the whole trigger type.
    let resp = post(&server, "/api/v1/webhooks/hook", json!({"n": 1})).await;
    assert_eq!(resp.status(), 202);
    let by_rule = eventually(
        Duration::from_secs(10),
        "the rule's execution",
        async || {
            let found = server.get_json("/api/v1/executions?rule=greet").await;
            if found.as_array().unwrap().len() == 1 {
                return Ok(found);
            }
            Err(found.to_string())
        },
    )
    .await;
    let ruled = &by_rule[0];
    assert_eq!(ruled["rule"]["ref"], "t.greet");
    let trigger_type = &ruled["trigger_type"];
    assert_eq!(trigger_type["ref"], "core.st2.webhook");
    for field in [
        "id",
        "uid",
        "name",
        "pack",
        "payload_schema",
        "parameters_schema",
    ] {
        assert!(trigger_type.get(field).is_some(), "{field}: {trigger_type}");
    }
    let by_ref = server.get_json("/api/v1/executions?rule=t.greet").await;
    assert_eq!(by_ref, json!([]));
    let by_type = server
        .get_json("/api/v1/executions?trigger_type=st2.webhook")
        .await;
    assert_eq!(ids(&by_type), [ruled["id"].as_str().unwrap().to_owned()]);
    let manual = server.get_json("/api/v1/executions?rule=null").await;
    assert_eq!(ids(&manual).len(), 3);

    // The `/actionexecutions` alias, under both prefixes.
    let aliased = server.get_json("/v1/actionexecutions?limit=1").await;
    assert_eq!(aliased[0]["id"], ruled["id"]);

    // A trigger type of the store's (not a system one) is shown whole too.
    let resp = post(
        &server,
        "/api/v1/triggertypes",
        json!({"name": "event", "pack": "mine", "description": "mine"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let resp = post(
        &server,
        "/api/v1/webhooks/st2",
        json!({"trigger": "mine.event", "payload": {"x": 1}}),
    )
    .await;
    assert_eq!(resp.status(), 202);
    let custom = eventually(
        Duration::from_secs(10),
        "the custom rule's execution",
        async || {
            let found = server.get_json("/api/v1/executions?rule=custom").await;
            if found.as_array().unwrap().len() == 1 {
                return Ok(found[0].clone());
            }
            Err(found.to_string())
        },
    )
    .await;
    assert_eq!(custom["trigger_type"]["ref"], "mine.event");
    assert_eq!(custom["trigger_type"]["name"], "event");
    assert_eq!(custom["trigger_type"]["description"], "mine");
    assert!(custom["trigger_type"]["id"].is_string(), "{custom}");
    let one = server
        .get_json(&format!(
            "/api/v1/executions/{}",
            custom["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one["trigger_type"], custom["trigger_type"]);
    let aliased = server
        .get_json(&format!("/api/v1/actionexecutions/{a}"))
        .await;
    assert_eq!(aliased["id"], a.as_str());
}

/// Derived from test_executions.py: test_post_with_st2_context_in_headers,
/// test_post_parameter_validation_explicit_none and test_post_delete_trace (`st2 run
/// --trace-tag`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_header_and_explicit_null_parameters() {
    let server = TestServer::builder().start().await;
    let parent = request(&server, "core.noop", json!({})).await;
    let context = json!({
        "parent": {"execution_id": parent["id"], "user": "stanley"},
        "user": null,
        "other": {"k1": "v1"},
    });
    let resp = server
        .client()
        .post(server.url("/api/v1/executions"))
        .header("st2-context", context.to_string())
        .json(&json!({"action": "core.noop", "user": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let child: Value = resp.json().await.unwrap();
    assert_eq!(
        child["context"],
        json!({
            "parent": {"execution_id": parent["id"], "user": "stanley"},
            "user": "stanley",
            "pack": "core",
            "other": {"k1": "v1"},
        }),
        "the parent's user is inherited"
    );
    let by_user = server.get_json("/api/v1/executions?user=stanley").await;
    assert_eq!(by_user[0]["id"], child["id"]);

    // `null` for an optional parameter, and for one with a default (the default is used).
    let resp = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.local", "parameters": {"cmd": "echo hi", "cwd": null, "timeout": null}}),
    )
    .await;
    let status = resp.status();
    let e: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["result"]["stdout"], "hi");

    // A trace tag starts a trace holding the execution.
    let resp = post(
        &server,
        "/api/v1/executions",
        json!({"action": "core.local", "parameters": {"cmd": "sleep 30"}, "context": {"trace_context": {"trace_tag": "balleilaka"}}}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let tagged: Value = resp.json().await.unwrap();
    let traces = server.get_json("/api/v1/traces?trace_tag=balleilaka").await;
    assert_eq!(traces.as_array().unwrap().len(), 1, "{traces}");
    assert_eq!(tagged["context"]["trace_context"]["id_"], traces[0]["id"]);
    let trace = server
        .get_json(&format!(
            "/api/v1/traces/{}",
            traces[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(trace["trace_tag"], "balleilaka");
    assert_eq!(trace["action_executions"][0]["object_id"], tagged["id"]);
    assert_eq!(trace["action_executions"][0]["ref"], "core.local");
    // `--trace-id`: an execution joins a trace that exists, and one that does not is refused.
    let trace_id = traces[0]["id"].as_str().unwrap();
    let resp = post(
        &server,
        "/api/v1/executions",
        json!({"action": "core.noop", "context": {"trace_context": {"id_": trace_id}}}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let joined: Value = resp.json().await.unwrap();
    let trace = server.get_json(&format!("/api/v1/traces/{trace_id}")).await;
    assert_eq!(trace["action_executions"][1]["object_id"], joined["id"]);
    for (id, message) in [
        (
            "000000000000000000000000",
            "Unable to find the TraceDB instance. {'id': '000000000000000000000000'}",
        ),
        ("nope", "Unable to find Trace with id=\"nope\""),
    ] {
        let resp = post(
            &server,
            "/api/v1/executions",
            json!({"action": "core.noop", "context": {"trace_context": {"id_": id}}}),
        )
        .await;
        assert_eq!(resp.status(), 400);
        assert_eq!(faultstring(resp).await, message);
    }
    let resp = server
        .client()
        .delete(server.url(&format!(
            "/api/v1/executions/{}",
            tagged["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// test_executions.py::test_template_param and ::test_template_encrypted_params: a parameter
/// whose default is a template shows its rendered value in the execution's `parameters`
/// (masked when secret); one given keeps the given value.
#[tokio::test]
async fn rendered_template_defaults_show_in_parameters() {
    let server = TestServer::builder()
        .action(
            "tpl",
            "noop_action",
            "parameters:\n  intparam: {type: integer, default: \"{{ st2kv.system.test_int | int }}\"}\n  plain: {type: string, default: abc}\n  hidden: {type: string, secret: true, default: \"{{ 'x' ~ 'y' }}\"}",
        )
        .start()
        .await;
    let body = request(&server, "t.tpl", json!({})).await;
    assert_eq!(
        body["parameters"],
        json!({"intparam": 0, "hidden": "********"}),
        "{body}"
    );
    let body = request(&server, "t.tpl", json!({"intparam": 3})).await;
    assert_eq!(
        body["parameters"],
        json!({"intparam": 3, "hidden": "********"})
    );
}

/// A server with the action `t.n` (the `noop_action` fixture).
async fn noop_server() -> TestServer {
    TestServer::builder()
        .action("n", "noop_action", "")
        .start()
        .await
}

/// Requests `action` without parameters and returns it once completed.
async fn ran(server: &TestServer, action: &str) -> Value {
    let requested = request(server, action, json!({})).await;
    finished(server, requested["id"].as_str().unwrap()).await
}

/// test_executions.py::test_get_single_attribute_success and
/// ::test_get_single_attribute_failure_invalid_attribute: `GET
/// /executions/{id}/attribute/{attribute}` answers one of `result`, `trigger_instance` and
/// `status` (`{}` when it has none), and 400 names the valid ones for another.
#[tokio::test]
async fn single_attributes_of_an_execution() {
    let server = noop_server().await;
    let execution = ran(&server, "t.n").await;
    let id = execution["id"].as_str().unwrap();
    let get = |path: String| {
        let server = &server;
        async move {
            let resp = server.client().get(server.url(&path)).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(
        get(format!("/api/v1/executions/{id}/attribute/status")).await,
        (200, json!("succeeded"))
    );
    assert_eq!(
        get(format!("/api/v1/executions/{id}/attribute/result")).await,
        (200, execution["result"].clone())
    );
    assert_eq!(
        get(format!(
            "/api/v1/actionexecutions/{id}/attribute/trigger_instance"
        ))
        .await,
        (200, json!({}))
    );
    let invalid = json!({"faultstring": "Invalid attribute \"start_timestamp\" specified. Valid attributes are: result, trigger_instance, status"});
    assert_eq!(
        get(format!("/api/v1/executions/{id}/attribute/start_timestamp")).await,
        (400, invalid.clone())
    );
    // The attribute is checked before the execution is looked up.
    assert_eq!(
        get("/api/v1/executions/6b0f0cddaa7ecf765d784101/attribute/start_timestamp".into()).await,
        (400, invalid)
    );
    assert_eq!(
        get("/api/v1/executions/6b0f0cddaa7ecf765d784101/attribute/status".into())
            .await
            .0,
        404
    );
}

/// test_executions_filters.py::test_filters_view and ::test_filters_view_specific_types: `GET
/// /executions/views/filters` lists the distinct values of each filter (`null` only where
/// StackStorm keeps it), and `?types=` picks filters by name.
#[tokio::test]
async fn the_filters_view_lists_distinct_values() {
    let server = noop_server().await;
    for action in ["t.n", "core.noop", "t.n"] {
        ran(&server, action).await;
    }
    let view = server.get_json("/api/v1/executions/views/filters").await;
    let user = request(&server, "core.noop", json!({})).await["context"]["user"].clone();
    assert_eq!(
        view,
        json!({
            "action": ["core.noop", "t.n"],
            "rule": [null],
            "runner": ["noop", "wasm"],
            "status": ["succeeded"],
            "trigger": [null],
            "trigger_type": [null],
            "user": [user],
        })
    );
    assert_eq!(
        server
            .get_json("/api/v1/actionexecutions/views/filters?types=action,user,nonexistent")
            .await,
        json!({"action": ["core.noop", "t.n"], "user": [user]})
    );
}

/// test_actions.py::test_get_one_using_tag_parameter: `GET /actions?tags=<name>` lists the
/// actions with a tag of that name.
#[tokio::test]
async fn actions_filter_by_tag_name() {
    let server = TestServer::builder()
        .action(
            "tagged",
            "noop_action",
            "tags:\n  - {name: tag1, value: dont-care}\n  - {name: tag2, value: dont-care}",
        )
        .action("plain", "noop_action", "")
        .start()
        .await;
    let tagged = server.get_json("/api/v1/actions?tags=tag2").await;
    assert_eq!(refs(&tagged), ["t.tagged"]);
    assert_eq!(
        tagged[0]["tags"],
        json!([{"name": "tag1", "value": "dont-care"}, {"name": "tag2", "value": "dont-care"}])
    );
    assert_eq!(
        server.get_json("/api/v1/actions?tags=nope").await,
        json!([])
    );
}

/// test_executions.py::test_get_raw_result: `GET /executions/{id}/result` is the result as
/// compact JSON (`text/json`), indented with `pretty_format=1`, a named attachment with
/// `download=1`, gzipped with `compress=1`; 404 for an unknown execution.
#[tokio::test]
async fn the_raw_result_as_text_file_and_gzip() {
    let server = noop_server().await;
    let execution = ran(&server, "t.n").await;
    let id = execution["id"].as_str().unwrap();
    let expected = serde_json::to_string(&execution["result"]).unwrap();
    let get = |path: String| {
        let server = &server;
        async move {
            let resp = server.client().get(server.url(&path)).send().await.unwrap();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            let heads = (
                resp.status().as_u16(),
                header("content-type"),
                header("content-disposition"),
            );
            (heads, resp.bytes().await.unwrap().to_vec())
        }
    };
    let base = format!("/api/v1/executions/{id}/result");
    let (heads, body) = get(base.clone()).await;
    assert_eq!(heads, (200, Some("text/json".into()), None));
    assert_eq!(String::from_utf8(body).unwrap(), expected);
    let (_, body) = get(format!("{base}?pretty_format=1")).await;
    let pretty: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        serde_json::to_string_pretty(&pretty).unwrap()
    );
    let file = format!("attachment; filename=execution_{id}_result.json");
    let (heads, body) = get(format!("{base}?download=1")).await;
    assert_eq!(heads, (200, Some("text/json".into()), Some(file.clone())));
    assert_eq!(String::from_utf8(body).unwrap(), expected);
    // The test client does not decompress: the body is the gzip member, of stored blocks.
    let (heads, body) = get(format!("{base}?download=1&compress=1")).await;
    assert_eq!(
        heads,
        (
            200,
            Some("application/x-gzip".into()),
            Some(format!("{file}.gz"))
        )
    );
    assert_eq!(&body[..2], &[0x1f, 0x8b]);
    assert!(
        body.windows(expected.len())
            .any(|w| w == expected.as_bytes())
    );
    let (heads, _) = get("/api/v1/executions/6b0f0cddaa7ecf765d784101/result".into()).await;
    assert_eq!(heads.0, 404);
}

/// test_executions.py::test_get_one_with_masked_secrets_in_output_schema and
/// ::test_get_one_without_masked_secrets_in_output_schema: the fields the action's
/// `output_schema` declares `secret` are masked in the result (under the runner's
/// `output_key`) unless `show_secrets`; the action shows its `output_schema`.
#[tokio::test]
async fn output_schema_secrets_are_masked_in_results() {
    let schema = "output_schema:\n  type: object\n  properties:\n    secret_param_1: {type: string, required: true, secret: true}\n    plain: {type: string}\n  additionalProperties: false";
    let server = TestServer::builder()
        .action(
            "spins",
            "loop_forever",
            &format!("limits: {{timeout_ms: 20000}}\n{schema}"),
        )
        .start()
        .await;
    let action = server.get_json("/api/v1/actions/t.spins").await;
    assert_eq!(
        action["output_schema"]["properties"]["secret_param_1"]["secret"],
        true
    );
    let id = request(&server, "t.spins", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let result = json!({"exit_code": 0, "result": {"secret_param_1": "foo", "plain": "bar"}});
    let resp = server
        .client()
        .put(server.url(&format!("/api/v1/executions/{id}")))
        .json(&json!({"status": "succeeded", "result": result}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let shown = server.get_json(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(
        shown["result"],
        json!({"exit_code": 0, "result": {"secret_param_1": "********", "plain": "bar"}})
    );
    let unmasked = server
        .get_json(&format!("/api/v1/executions/{id}?show_secrets=true"))
        .await;
    assert_eq!(unmasked["result"], result);
}

/// `filter=` takes at most 32 `field:value` tokens: each becomes SQL conditions evaluated on
/// every execution row, and 8,000 of them (a long URL) exceeded SQLite's bound parameters
/// (a 500). Not a StackStorm test: StackStorm has no limit. A repeated `status` is one.
#[tokio::test]
async fn list_filters_are_bounded() {
    let server = TestServer::builder().start().await;
    let get = async |query: String| {
        server
            .client()
            .get(server.url(&format!("/api/v1/executions?{query}")))
            .send()
            .await
            .unwrap()
    };
    let filter = |tokens: usize| format!("filter={}", vec!["status:succeeded"; tokens].join("%20"));
    let resp = get(filter(32)).await;
    assert_eq!(resp.status(), 200);
    let resp = get(filter(3_000)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        faultstring(resp).await,
        "too many filters in \"filter\": 3000, at most 32"
    );
    // `status=a,,,...` (60,000 commas) was 60,000 bound parameters: a 500. A status given
    // twice is one condition.
    let resp = get(format!("status=a{}", ",".repeat(60_000))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!([]));
}

/// A request with more parameters than one render takes is refused with a 400 and nothing
/// stored: rendering 4,000 chained parameters took 19 s of a server thread.
#[tokio::test]
async fn too_many_parameters_are_refused() {
    let server = TestServer::builder().start().await;
    let parameters: serde_json::Map<String, Value> = (0..300)
        .map(|i| {
            (
                format!("p{i}"),
                json!(format!("{{{{ p{} }}}}", i.max(1) - 1)),
            )
        })
        .collect();
    let resp = post(
        &server,
        "/api/v1/executions",
        json!({"action": "core.noop", "parameters": parameters}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        faultstring(resp).await,
        "Too many parameters: 300, at most 256"
    );
    assert_eq!(server.get_json("/api/v1/executions").await, json!([]));
}
