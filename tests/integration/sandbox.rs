//! Each hostile fixture is contained: the call ends in bounded time with a typed error naming the
//! plugin, the next call on the same plugin works, and other plugins keep serving meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stormhook_runtime::{
    ActionContext, GuestErrorKind, KvGrant, Limits, PluginError, PluginKind, PluginSpec, Runtime,
    RuntimeConfig, TriggerInstance,
};
use stormhook_tests::{component, load_fixture, runtime};

fn small_limits() -> RuntimeConfig {
    RuntimeConfig {
        action_defaults: Limits {
            timeout: Duration::from_millis(300),
            memory_bytes: 32 << 20,
        },
        rule_defaults: Limits {
            timeout: Duration::from_millis(100),
            memory_bytes: 16 << 20,
        },
        ..RuntimeConfig::default()
    }
}

/// The same memory caps with a deadline far away: for tests where the memory cap or the stack
/// limit, not the clock, must be what stops the plugin even on a loaded CI machine (touching
/// 32 MiB took longer than 300 ms there once).
fn roomy_limits() -> RuntimeConfig {
    let mut config = small_limits();
    config.action_defaults.timeout = Duration::from_secs(20);
    config
}

async fn run(
    rt: &Runtime,
    reference: &str,
    params: &str,
) -> stormhook_runtime::CallReport<serde_json::Value> {
    rt.run_action(reference, params, ActionContext::default())
        .await
}

/// After a hostile call, the same plugin must still answer a harmless call with the same error
/// class (fresh sandbox) and an unrelated plugin must answer normally.
async fn assert_recovers(rt: &Arc<Runtime>) {
    let noop = load_fixture(rt, "noop_action", PluginKind::Action).await;
    let report = run(rt, &noop, r#"{"after":"hostile"}"#).await;
    assert_eq!(
        report.result.unwrap(),
        serde_json::json!({"after": "hostile"})
    );
}

#[tokio::test]
async fn infinite_loop_times_out_at_the_deadline_and_the_next_call_works() {
    let rt = runtime(small_limits());
    let looping = load_fixture(&rt, "loop_forever", PluginKind::Action).await;
    for _ in 0..2 {
        let started = Instant::now();
        let report = run(&rt, &looping, "{}").await;
        let elapsed = started.elapsed();
        let err = report.result.unwrap_err();
        assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains("`test.loop_forever`"), "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(
            elapsed >= Duration::from_millis(300),
            "stopped early: {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_millis(1300),
            "not stopped in time: {elapsed:?}"
        );
    }
    assert_recovers(&rt).await;
}

#[tokio::test]
async fn looping_rule_times_out_with_the_rule_deadline() {
    let rt = runtime(small_limits());
    let rule = load_fixture(&rt, "loop_rule", PluginKind::Rule).await;
    let started = Instant::now();
    let report = rt.evaluate_rule(&rule, &TriggerInstance::default()).await;
    let err = report.result.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_looping_plugin_does_not_stop_other_plugins() {
    let rt = runtime(RuntimeConfig {
        action_defaults: Limits {
            timeout: Duration::from_secs(2),
            memory_bytes: 32 << 20,
        },
        ..RuntimeConfig::default()
    });
    let looping = load_fixture(&rt, "loop_forever", PluginKind::Action).await;
    let noop = load_fixture(&rt, "noop_action", PluginKind::Action).await;
    let busy = {
        let rt = Arc::clone(&rt);
        tokio::spawn(async move { run(&rt, &looping, "{}").await })
    };
    // While the loop runs (2 s), other calls keep completing.
    let started = Instant::now();
    for i in 0..50 {
        let report = run(&rt, &noop, &format!(r#"{{"i":{i}}}"#)).await;
        assert_eq!(report.result.unwrap()["i"], i);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "other plugins were held up: {:?}",
        started.elapsed()
    );
    assert!(busy.await.unwrap().result.unwrap_err().is_timeout());
}

#[tokio::test]
async fn memory_bomb_hits_the_cap_and_the_next_call_works() {
    let rt = runtime(roomy_limits());
    let bomb = load_fixture(&rt, "memory_bomb", PluginKind::Action).await;
    for _ in 0..2 {
        let started = Instant::now();
        let err = run(&rt, &bomb, "{}").await.result.unwrap_err();
        match &err {
            PluginError::OutOfMemory {
                plugin,
                limit_bytes,
            } => {
                assert_eq!(plugin.reference, "test.memory_bomb");
                assert_eq!(*limit_bytes, 32 << 20);
            }
            other => panic!("expected out of memory, got {other:?}"),
        }
        assert!(err.to_string().contains("out of memory"), "{err}");
        // Stopped by the cap, well before the deadline.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
    assert_recovers(&rt).await;
}

#[tokio::test]
async fn unbounded_recursion_is_stopped_and_named() {
    let rt = runtime(roomy_limits());
    let deep = load_fixture(&rt, "stack_overflow", PluginKind::Action).await;
    for _ in 0..2 {
        // Frames that live on wasmtime's call stack: its stack-overflow trap.
        let err = run(&rt, &deep, r#"{"small_frames": true}"#)
            .await
            .result
            .unwrap_err();
        assert!(matches!(err, PluginError::StackOverflow { .. }), "{err:?}");
        assert!(
            err.to_string().contains("`test.stack_overflow`")
                && err.to_string().contains("stack overflow"),
            "{err}"
        );
        // Large frames exhaust the guest's own stack in linear memory first.
        let err = run(&rt, &deep, "{}").await.result.unwrap_err();
        assert!(matches!(err, PluginError::Trap { .. }), "{err:?}");
        assert!(
            err.to_string().contains("out of bounds memory access")
                && err.to_string().contains("stack overflow"),
            "{err}"
        );
    }
    assert_recovers(&rt).await;
}

#[tokio::test]
async fn a_panic_is_a_trap_carrying_the_panic_message() {
    let rt = runtime(small_limits());
    let panicking = load_fixture(&rt, "panic", PluginKind::Action).await;
    let report = run(&rt, &panicking, "{}").await;
    let err = report.result.unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("`test.panic`") && text.contains("fixture panic"),
        "{text}"
    );
    assert!(
        report.captured.stderr.contains("fixture panic"),
        "{:?}",
        report.captured
    );
    assert_recovers(&rt).await;
}

#[tokio::test]
async fn typed_guest_errors_keep_their_kind_and_message() {
    let rt = runtime(small_limits());
    let failing = load_fixture(&rt, "guest_error", PluginKind::Action).await;
    for (kind, expected) in [
        ("invalid-input", GuestErrorKind::InvalidInput),
        ("denied", GuestErrorKind::Denied),
        ("upstream", GuestErrorKind::Upstream),
        ("internal", GuestErrorKind::Internal),
    ] {
        let report = run(&rt, &failing, &format!(r#"{{"kind":"{kind}"}}"#)).await;
        match report.result.unwrap_err() {
            PluginError::Guest { plugin, error } => {
                assert_eq!(plugin.reference, "test.guest_error");
                assert_eq!(error.kind, expected);
                assert!(
                    error.message.contains("fixture guest error"),
                    "{}",
                    error.message
                );
            }
            other => panic!("expected a guest error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn huge_output_is_captured_up_to_the_bound_and_the_rest_is_counted() {
    let rt = runtime(RuntimeConfig {
        capture_bytes: 16 << 10,
        max_output_bytes: 64 << 10,
        ..small_limits()
    });
    let noisy = load_fixture(&rt, "huge_output", PluginKind::Action).await;
    let report = run(
        &rt,
        &noisy,
        r#"{"log_lines": 5000, "stdout_bytes": 1000000, "result_bytes": 1000}"#,
    )
    .await;
    let value = report
        .result
        .expect("a noisy plugin still returns its result");
    assert_eq!(value["data"].as_str().unwrap().len(), 1000);
    let captured = &report.captured;
    assert!(
        captured.stdout.len() <= 16 << 10 && captured.stdout.len() > 8 << 10,
        "{}",
        captured.stdout.len()
    );
    assert_eq!(
        captured.stdout.len() as u64 + captured.stdout_dropped,
        1_000_000
    );
    let log_bytes: usize = captured.logs.iter().map(|l| l.message.len()).sum();
    assert!(log_bytes <= 16 << 10, "{log_bytes}");
    assert_eq!(captured.logs.len() as u64 + captured.logs_dropped, 5000);
    assert!(captured.truncated());

    // A result past the output limit is refused with a clear reason.
    let err = run(&rt, &noisy, r#"{"result_bytes": 200000}"#)
        .await
        .result
        .unwrap_err();
    assert!(matches!(err, PluginError::InvalidOutput { .. }), "{err:?}");
    assert!(err.to_string().contains("byte limit"), "{err}");
}

#[tokio::test]
async fn logs_reach_the_call_record_with_levels_and_fields() {
    let rt = runtime(small_limits());
    let probe = load_fixture(&rt, "log_probe", PluginKind::Action).await;
    let report = run(&rt, &probe, "{}").await;
    assert_eq!(report.result.unwrap(), serde_json::json!({"ok": true}));
    let levels: Vec<_> = report
        .captured
        .logs
        .iter()
        .map(|l| format!("{:?}", l.level))
        .collect();
    assert_eq!(levels, ["Trace", "Debug", "Info", "Warn", "Error"]);
    assert!(
        report
            .captured
            .logs
            .iter()
            .all(|l| l.fields == [("k".to_owned(), "v".to_owned())])
    );
    assert!(report.captured.stdout.contains("stdout-line"));
    assert!(report.captured.stderr.contains("stderr-line"));
    assert_eq!(report.plugin.unwrap().reference, "test.log_probe");
}

#[tokio::test]
async fn the_datastore_is_reachable_only_within_the_grant() {
    let rt = runtime(small_limits());
    let granted = PluginSpec {
        kv: KvGrant {
            read: true,
            write: true,
            prefix: "demo.".into(),
            secrets: false,
        },
        ..PluginSpec::new("test.kv_rw", PluginKind::Action, component("kv_probe"))
    };
    rt.load(granted).await.unwrap();
    let read_only = PluginSpec {
        kv: KvGrant {
            read: true,
            write: false,
            prefix: String::new(),
            secrets: false,
        },
        ..PluginSpec::new("test.kv_ro", PluginKind::Action, component("kv_probe"))
    };
    rt.load(read_only).await.unwrap();
    load_fixture(&rt, "kv_probe", PluginKind::Action).await; // no grant at all

    let set = run(
        &rt,
        "test.kv_rw",
        r#"{"op":"set","key":"demo.x","value":"42"}"#,
    )
    .await;
    assert!(set.result.is_ok(), "{:?}", set.result);
    let got = run(&rt, "test.kv_ro", r#"{"op":"get","key":"demo.x"}"#).await;
    assert_eq!(got.result.unwrap()["result"], "42");

    let denied = |report: stormhook_runtime::CallReport<serde_json::Value>| match report.result {
        Err(PluginError::Guest { error, .. }) => {
            assert_eq!(error.kind, GuestErrorKind::Denied, "{}", error.message);
            error.message
        }
        other => panic!("expected denied, got {other:?}"),
    };
    let message = denied(
        run(
            &rt,
            "test.kv_rw",
            r#"{"op":"set","key":"other.x","value":"1"}"#,
        )
        .await,
    );
    assert!(
        message.contains("other.x") && message.contains("demo."),
        "{message}"
    );
    denied(run(&rt, "test.kv_ro", r#"{"op":"delete","key":"demo.x"}"#).await);
    denied(run(&rt, "test.kv_probe", r#"{"op":"get","key":"demo.x"}"#).await);

    let deleted = run(&rt, "test.kv_rw", r#"{"op":"delete","key":"demo.x"}"#).await;
    assert_eq!(deleted.result.unwrap()["result"], true);
    let gone = run(&rt, "test.kv_ro", r#"{"op":"get","key":"demo.x"}"#).await;
    assert_eq!(gone.result.unwrap()["result"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_instance_limit_calls_fail_as_busy_instead_of_queueing() {
    let rt = runtime(RuntimeConfig {
        max_instances: 1,
        action_defaults: Limits {
            timeout: Duration::from_secs(3),
            memory_bytes: 32 << 20,
        },
        ..RuntimeConfig::default()
    });
    let looping = load_fixture(&rt, "loop_forever", PluginKind::Action).await;
    let noop = load_fixture(&rt, "noop_action", PluginKind::Action).await;
    let holder = {
        let rt = Arc::clone(&rt);
        tokio::spawn(async move { run(&rt, &looping, "{}").await })
    };
    // Wait until the looping call holds the only slot.
    while rt.instances_in_use() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let busy = run(&rt, &noop, "{}").await.result.unwrap_err();
    assert!(matches!(busy, PluginError::Busy { .. }), "{busy:?}");
    assert!(
        busy.to_string()
            .contains("busy, all 1 instance slots are in use"),
        "{busy}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "busy is answered at once, not after queueing"
    );
    assert!(holder.await.unwrap().result.unwrap_err().is_timeout());
    // The slot is released when the call ends.
    assert_eq!(rt.instances_in_use(), 0);
    assert!(run(&rt, &noop, "{}").await.result.is_ok());
}

#[tokio::test]
async fn a_rule_component_decides_and_returns_values() {
    let rt = runtime(small_limits());
    let rule = PluginSpec::new(
        "demo.push_to_main",
        PluginKind::Rule,
        component("branch_filter"),
    );
    rt.load(rule).await.unwrap();
    let instance = |body: serde_json::Value| TriggerInstance {
        id: "5f0000000000000000000001".into(),
        trigger: "core.st2.webhook".into(),
        payload: serde_json::json!({"headers": {}, "headers_lower": {}, "body": body}).to_string(),
        occurrence_time: "2026-11-29T16:23:00.000000Z".into(),
    };
    let push = instance(serde_json::json!({"ref": "refs/heads/main", "pusher": {"name": "ada"}}));
    let decision = rt
        .evaluate_rule("demo.push_to_main", &push)
        .await
        .result
        .unwrap();
    assert!(decision.matched);
    assert_eq!(
        decision.values.unwrap(),
        serde_json::json!({"branch": "main", "pusher": "ada"})
    );
    let feature = instance(serde_json::json!({"ref": "refs/heads/feature"}));
    assert!(
        !rt.evaluate_rule("demo.push_to_main", &feature)
            .await
            .result
            .unwrap()
            .matched
    );
    let no_ref = instance(serde_json::json!({"zen": "hi"}));
    assert!(
        !rt.evaluate_rule("demo.push_to_main", &no_ref)
            .await
            .result
            .unwrap()
            .matched
    );
}

#[tokio::test]
async fn invalid_parameters_and_unknown_plugins_are_clear_errors() {
    let rt = runtime(small_limits());
    let noop = load_fixture(&rt, "noop_action", PluginKind::Action).await;
    let err = run(&rt, &noop, "{not json").await.result.unwrap_err();
    assert!(matches!(err, PluginError::InvalidInput { .. }), "{err:?}");
    let err = run(&rt, "test.nope", "{}").await.result.unwrap_err();
    assert_eq!(err.to_string(), "plugin `test.nope` is not loaded");
    // A rule is not an action: looking it up as one fails.
    load_fixture(&rt, "noop_rule", PluginKind::Rule).await;
    assert!(matches!(
        run(&rt, "test.noop_rule", "{}").await.result,
        Err(PluginError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_component_of_the_wrong_world_or_not_a_component_is_refused() {
    let rt = runtime(small_limits());
    let wrong_world = PluginSpec::new("test.wrong", PluginKind::Action, component("noop_rule"));
    let err = rt.load(wrong_world).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("does not implement the `stormhook:plugin/action` world"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm garbage").unwrap();
    let err = rt
        .load(PluginSpec::new(
            "test.garbage",
            PluginKind::Action,
            &garbage,
        ))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not a valid WebAssembly component"),
        "{err}"
    );
    let info = rt
        .list()
        .into_iter()
        .find(|i| i.reference == "test.garbage")
        .expect("failure is listed");
    assert!(info.version.is_none() && info.last_error.is_some());
}
