//! Every example pack loads without a single refused document or component, and its plugins do
//! what the pack's README says.

use std::sync::Arc;

use stormhook_automation::packs::PackManager;
use stormhook_runtime::{ActionContext, PluginKind, RuntimeConfig, TriggerInstance};
use stormhook_tests::{install_examples, runtime};

#[tokio::test]
async fn every_example_pack_loads_and_its_plugins_work() {
    let dir = tempfile::tempdir().unwrap();
    install_examples(dir.path());
    let rt = runtime(RuntimeConfig::default());
    let manager = PackManager::new(dir.path().to_owned(), Arc::clone(&rt));
    let report = manager.reload().await;
    assert!(report.errors.is_empty(), "{:#?}", report.errors);

    // Every document in the repository's examples/ that names a component is loaded.
    let mut expected = Vec::new();
    for pack in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
        .unwrap()
        .flatten()
    {
        for sub in ["actions", "rules"] {
            for doc in std::fs::read_dir(pack.path().join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = std::fs::read_to_string(doc.path()).unwrap();
                if text.contains("entry_point:") {
                    let name = text.lines().find_map(|l| l.strip_prefix("name: ")).unwrap();
                    expected.push(format!(
                        "{}.{}",
                        pack.file_name().to_string_lossy(),
                        name.trim()
                    ));
                }
            }
        }
    }
    let mut loaded: Vec<_> = rt
        .list()
        .into_iter()
        .filter(|i| i.version.is_some())
        .map(|i| i.reference)
        .collect();
    expected.sort();
    loaded.sort();
    assert_eq!(loaded, expected);

    let greet = rt
        .run_action("demo.greet", r#"{"name":"Ada"}"#, ActionContext::default())
        .await;
    assert_eq!(
        greet.result.unwrap(),
        serde_json::json!({"message": "Hello, Ada!"})
    );
    assert!(!greet.captured.logs.is_empty(), "greet logs a line");

    for expected in [1, 3] {
        let by = if expected == 1 { 1 } else { 2 };
        let params = format!(r#"{{"key":"demo.visits","by":{by}}}"#);
        let counted = rt
            .run_action("demo.counter", &params, ActionContext::default())
            .await;
        assert_eq!(
            counted.result.unwrap(),
            serde_json::json!({"key": "demo.visits", "value": expected})
        );
    }
    let outside = rt
        .run_action(
            "demo.counter",
            r#"{"key":"secrets.x"}"#,
            ActionContext::default(),
        )
        .await;
    assert!(outside.result.unwrap_err().to_string().contains("denied"));

    assert!(rt.get(PluginKind::Rule, "demo.push_to_main").is_some());
    let push = TriggerInstance {
        id: "5f0000000000000000000002".into(),
        trigger: "core.st2.webhook".into(),
        payload: r#"{"headers":{},"headers_lower":{},"body":{"ref":"refs/heads/master","pusher":{"name":"grace"}}}"#.into(),
        occurrence_time: "2026-11-29T16:23:00.000000Z".into(),
    };
    let decision = rt
        .evaluate_rule("demo.push_to_main", &push)
        .await
        .result
        .unwrap();
    assert!(decision.matched);
    assert_eq!(decision.values.unwrap()["pusher"], "grace");
}
