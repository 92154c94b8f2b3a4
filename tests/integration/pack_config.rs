//! Pack config, StackStorm's way: `config.schema.yaml` in the pack, values in
//! `<data-dir>/configs/<pack>.yaml`, validated when loaded, `config_context` in action
//! parameters, `GET /configs` with secrets masked, refused configs reported while the previous
//! one serves, and hot reload of the values file.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stormhook_automation::packs::PackManager;
use stormhook_runtime::RuntimeConfig;
use stormhook_tests::{TestServer, eventually, eventually_every, faultstring, runtime};

const SCHEMA: &str = r##"
channel: {type: string, description: Where to post, default: "#general"}
token: {type: string, secret: true, required: true}
retries: {type: integer, default: 3}
"##;

const TOKEN: &str = "xoxb-S3CR3T-T0K3N";

fn values(channel: &str) -> String {
    format!("channel: \"{channel}\"\ntoken: {TOKEN}\n")
}

/// Action `t.echo`: the `noop_action` fixture returns the parameters it gets, so the
/// execution's result shows what the action ran with.
const ECHO_PARAMETERS: &str = "parameters:\n  channel: {type: string, default: \"{{ config_context.channel }}\"}\n  retries: {type: integer, default: \"{{ config_context.retries }}\"}";

/// `GET path` with the server's API key.
async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    server.client().get(server.url(path)).send().await.unwrap()
}

async fn executions_of(server: &TestServer, action: &str) -> Vec<Value> {
    serde_json::from_value(
        server
            .get_json(&format!("/api/v1/executions?action={action}&limit=-1"))
            .await,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_runs_an_action_whose_parameter_defaults_come_from_config_context() {
    let rule = "name: post\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: post\naction:\n  ref: t.echo\n";
    let server = TestServer::builder()
        .pack_config(Some(SCHEMA), Some(&values("#deploys")))
        .action("echo", "noop_action", ECHO_PARAMETERS)
        .rules([("post".to_owned(), rule.to_owned())])
        .start()
        .await;
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/post"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let execution = eventually(
        Duration::from_secs(20),
        "the rule's execution to succeed",
        async || match executions_of(&server, "t.echo").await.first() {
            Some(e) if e["status"] == "succeeded" => Ok(e.clone()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(
        execution["result"]["result"],
        json!({"channel": "#deploys", "retries": 3}),
        "the configured value, and the schema's default cast to its declared type"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_values_from_the_datastore_are_rendered_when_the_action_runs() {
    let server = TestServer::builder()
        .pack_config(
            Some(SCHEMA),
            Some("channel: \"{{ st2kv.system.room }}\"\ntoken: \"{{ st2kv.system.tok }}\"\n"),
        )
        .action("echo", "noop_action", ECHO_PARAMETERS)
        .start()
        .await;
    let client = server.client();
    let run = async || {
        client
            .post(server.url("/api/v1/executions?wait=30"))
            .json(&json!({"action": "t.echo", "parameters": {}}))
            .send()
            .await
            .unwrap()
    };
    // Without the key the template renders as "" (StackStorm's datastore lookups are never
    // undefined), which the config loader makes `None`; the `string` parameter that uses it
    // renders that as text, `"None"`, as StackStorm's `param.py` renders it.
    let unset = run().await;
    assert_eq!(unset.status(), 201);
    let unset: Value = unset.json().await.unwrap();
    assert_eq!(unset["result"]["result"]["channel"], "None", "{unset}");

    for (key, value) in [("room", "#from-kv"), ("tok", TOKEN)] {
        let resp = client
            .put(server.url(&format!("/api/v1/keys/{key}")))
            .json(&json!({"name": key, "value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let ran = run().await;
    assert_eq!(ran.status(), 201);
    let ran: Value = ran.json().await.unwrap();
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert_eq!(ran["result"]["result"]["channel"], "#from-kv");
    // An explicit `null` takes the declared default, which is then rendered like any default.
    let resp = client
        .post(server.url("/api/v1/executions?wait=30"))
        .json(&json!({"action": "t.echo", "parameters": {"channel": null}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let ran: Value = resp.json().await.unwrap();
    assert_eq!(ran["result"]["result"]["channel"], "#from-kv", "{ran}");

    // The API shows the templates as written (never the datastore's values).
    let shown = server.get_json("/api/v1/configs/t?show_secrets=true").await;
    assert_eq!(shown["values"]["token"], "{{ st2kv.system.tok }}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configs_api_masks_secrets_unless_show_secrets() {
    let server = TestServer::builder()
        .pack_config(Some(SCHEMA), Some(&values("#deploys")))
        .start()
        .await;

    let resp = get(&server, "/api/v1/configs").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["X-Total-Count"], "1");
    let text = resp.text().await.unwrap();
    assert!(!text.contains(TOKEN), "a secret in GET /configs: {text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list[0]["pack"], "t");
    assert_eq!(
        list[0]["values"],
        json!({"channel": "#deploys", "token": "********", "retries": 3})
    );

    for path in ["/api/v1/configs/t", "/v1/configs/t"] {
        let text = get(&server, path).await.text().await.unwrap();
        assert!(!text.contains(TOKEN), "a secret in GET {path}: {text}");
        assert!(text.contains("\"token\":\"********\""), "{text}");
    }
    let shown = server.get_json("/api/v1/configs/t?show_secrets=true").await;
    assert_eq!(shown["values"]["token"], TOKEN);
    let listed = server.get_json("/api/v1/configs?show_secrets=1").await;
    assert_eq!(listed[0]["values"]["token"], TOKEN);

    let missing = get(&server, "/api/v1/configs/nope").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        faultstring(missing).await,
        "Unable to identify resource with pack_ref \"nope\"."
    );
    let bad = get(&server, "/api/v1/configs/t?show_secrets=maybe").await;
    assert_eq!(bad.status(), 400);
    let anonymous = reqwest::get(server.url("/api/v1/configs")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_values_file_is_reported_and_the_previous_config_keeps_serving() {
    let server = TestServer::builder()
        .pack_config(Some(SCHEMA), Some(&values("#deploys")))
        .start()
        .await;
    let values_file = server.dir.path().join("configs/t.yaml");
    let reload = async || {
        let resp = server
            .client()
            .post(server.url("/api/v1/plugins/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()
    };

    // A secret of the wrong type: the error names the key, the types and the file, not the value.
    std::fs::write(&values_file, "channel: ops\ntoken: 918273645\n").unwrap();
    let report = reload().await;
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    let error = errors[0].as_str().unwrap();
    assert_eq!(
        error,
        format!(
            "{}:2:1: config key \"token\" must be of type string, found integer",
            values_file.display()
        )
    );
    let config = server.get_json("/api/v1/configs/t").await;
    assert_eq!(
        config["values"]["channel"], "#deploys",
        "the previous config serves"
    );

    std::fs::write(&values_file, "channel: ops\n").unwrap();
    let report = reload().await;
    assert_eq!(
        report["errors"][0],
        format!(
            "{}: required config key \"token\" is missing (the config.schema.yaml of pack \"t\" requires it)",
            values_file.display()
        )
    );

    std::fs::write(&values_file, "channel: [ops\n").unwrap();
    let report = reload().await;
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:", values_file.display())),
        "{report}"
    );
    assert_eq!(
        server.get_json("/api/v1/configs/t").await["values"]["channel"],
        "#deploys"
    );

    std::fs::write(&values_file, values("#fixed")).unwrap();
    let report = reload().await;
    assert_eq!(report["errors"], json!([]));
    assert_eq!(
        server.get_json("/api/v1/configs/t").await["values"]["channel"],
        "#fixed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_values_file_is_hot_reloaded_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (packs, configs) = (dir.path().join("packs"), dir.path().join("configs"));
    std::fs::create_dir_all(packs.join("t")).unwrap();
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(packs.join("t/config.schema.yaml"), SCHEMA).unwrap();
    std::fs::write(configs.join("t.yaml"), values("#one")).unwrap();
    let manager = Arc::new(
        PackManager::new(packs.clone(), runtime(RuntimeConfig::default()))
            .with_configs(configs.clone()),
    );
    let report = manager.reload().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let watcher = manager.watch().unwrap();
    let channel = || {
        manager
            .config("t")
            .map(|c| c.values["channel"].clone())
            .unwrap_or_default()
    };
    assert_eq!(channel(), "#one");

    let poll = Duration::from_millis(10);
    std::fs::write(configs.join("t.yaml"), values("#two")).unwrap();
    eventually_every(
        poll,
        Duration::from_secs(1),
        "the new values (within one second)",
        async || match channel() {
            v if v == "#two" => Ok(()),
            v => Err(format!("channel is {v}")),
        },
    )
    .await;

    // A broken edit is refused; the last good config keeps serving.
    std::fs::write(configs.join("t.yaml"), "channel: 5\n").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(channel(), "#two");

    // The schema is watched too: a new default reaches a key the values file leaves out.
    std::fs::write(
        packs.join("t/config.schema.yaml"),
        SCHEMA.replace("default: 3", "default: 7"),
    )
    .unwrap();
    std::fs::write(configs.join("t.yaml"), values("#three")).unwrap();
    eventually_every(
        poll,
        Duration::from_secs(1),
        "the new schema's default",
        async || {
            let config = manager.config("t").unwrap();
            match (&config.values["channel"], &config.values["retries"]) {
                (c, r) if c == "#three" && r == 7 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    watcher.stop().await;
}
