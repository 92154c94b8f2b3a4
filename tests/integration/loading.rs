//! Load-time limits and background loading: a component past a limit is refused before it is
//! compiled (or its compile abandoned) and leaves nothing in the compile cache; loads of
//! different plugins do not wait for each other; a call to a plugin still loading waits for it
//! or fails as `loading`; a guest's `exit()` and a long call's move to the background pool are
//! reported for what they are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stormhook_runtime::{
    ActionContext, LoadError, LoadLimits, PluginError, PluginKind, PluginSpec, PluginState,
    Runtime, RuntimeConfig, datastore::MemoryDatastore,
};
use stormhook_tests::{cached_files, component, eventually, generated_component, load_fixture};

/// A runtime with a compile cache of its own (in `cache`), so a test sees what it wrote.
fn runtime_in(cache: &std::path::Path, load: LoadLimits) -> Arc<Runtime> {
    let config = RuntimeConfig {
        cache_dir: Some(cache.to_owned()),
        max_instances: 16,
        load,
        ..RuntimeConfig::default()
    };
    Arc::new(Runtime::new(config, Arc::new(MemoryDatastore::default())).unwrap())
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn refused_reason(result: Result<stormhook_runtime::LoadOutcome, LoadError>) -> String {
    match result {
        Err(LoadError::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_with_200k_functions_is_refused_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_in(&dir.path().join("cache"), LoadLimits::default());
    let path = write(dir.path(), "many.wasm", &generated_component(200_000, 0, 0));
    let started = Instant::now();
    let result = rt
        .load(PluginSpec::new("t.many", PluginKind::Action, &path))
        .await;
    let reason = refused_reason(result);
    assert!(
        reason.contains("declares 200000 functions, more than the limit of 100000"),
        "{reason}"
    );
    // Compiling it took ~30 s on this machine and cached ~100 MB: it was not compiled.
    assert!(cached_files(&dir.path().join("cache")).is_empty());
    println!("refused in {:?}", started.elapsed());
    let info = rt
        .list()
        .into_iter()
        .find(|p| p.reference == "t.many")
        .unwrap();
    assert_eq!(info.state, PluginState::Failed);
    assert!(info.last_error.unwrap().contains("200000 functions"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60_mb_component_is_refused_by_its_size_and_the_old_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_in(&dir.path().join("cache"), LoadLimits::default());
    let path = dir.path().join("big.wasm");
    std::fs::copy(component("noop_action"), &path).unwrap();
    rt.load(PluginSpec::new("t.big", PluginKind::Action, &path))
        .await
        .unwrap();
    let serving = cached_files(&dir.path().join("cache"));
    assert_eq!(serving.len(), 1);

    write(dir.path(), "big.wasm", &generated_component(1, 0, 60 << 20));
    let result = rt
        .load(PluginSpec::new("t.big", PluginKind::Action, &path))
        .await;
    let reason = refused_reason(result);
    assert!(
        reason.contains("more than the limit of 50331648 bytes"),
        "{reason}"
    );
    assert_eq!(cached_files(&dir.path().join("cache")), serving);
    let report = rt
        .run_action("t.big", r#"{"still":"serving"}"#, ActionContext::default())
        .await;
    assert_eq!(
        report.result.unwrap(),
        serde_json::json!({"still": "serving"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_past_its_time_limit_is_abandoned_and_nothing_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let rt = runtime_in(
        &cache,
        LoadLimits {
            compile_timeout: Duration::from_millis(100),
            ..LoadLimits::default()
        },
    );
    let path = write(dir.path(), "slow.wasm", &generated_component(20_000, 20, 0));
    let reason = refused_reason(
        rt.load(PluginSpec::new("t.slow", PluginKind::Action, &path))
            .await,
    );
    assert!(
        reason.contains("compiling took longer than the limit of 0.1 s; abandoned"),
        "{reason}"
    );
    // The abandoned compiler finishes in the background, and its output is thrown away.
    eventually(
        Duration::from_secs(120),
        "the abandoned compile to end",
        async || match rt.compiles_running() {
            0 => Ok(()),
            n => Err(format!("{n} running")),
        },
    )
    .await;
    assert!(
        cached_files(&cache).is_empty(),
        "{:?}",
        cached_files(&cache)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_of_different_plugins_do_not_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_in(&dir.path().join("cache"), LoadLimits::default());
    let slow_path = write(dir.path(), "slow.wasm", &generated_component(60_000, 20, 0));
    let slow = tokio::spawn(rt.load(PluginSpec::new("t.slow", PluginKind::Action, &slow_path)));
    // The slow component is compiling; a small plugin loads meanwhile, and serves.
    let fast = rt
        .load(PluginSpec::new(
            "t.fast",
            PluginKind::Action,
            component("noop_action"),
        ))
        .await;
    assert!(fast.is_ok(), "{fast:?}");
    let states: Vec<(String, PluginState)> = rt
        .list()
        .into_iter()
        .map(|p| (p.reference, p.state))
        .collect();
    assert!(
        states.contains(&("t.slow".into(), PluginState::Loading)),
        "the slow one is still loading: {states:?}"
    );
    let report = rt
        .run_action("t.fast", "{}", ActionContext::default())
        .await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    // A call to the slow one waits for it, then finds that it is no action (it implements
    // no world): a clear error, not a hang.
    let outcome = slow.await.unwrap();
    assert!(
        matches!(outcome, Err(LoadError::Link { .. })),
        "{outcome:?}"
    );
    assert_eq!(rt.loading(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_plugin_still_loading_waits_for_it_or_fails_as_loading() {
    let dir = tempfile::tempdir().unwrap();
    // A fresh cache: the first version of `t.noop` has to be compiled.
    let rt = runtime_in(&dir.path().join("cache"), LoadLimits::default());
    let load = tokio::spawn(rt.load(PluginSpec::new(
        "t.noop",
        PluginKind::Action,
        component("noop_action"),
    )));
    let report = rt
        .run_action("t.noop", r#"{"waited":true}"#, ActionContext::default())
        .await;
    assert_eq!(report.result.unwrap(), serde_json::json!({"waited": true}));
    load.await.unwrap().unwrap();

    let impatient = runtime_in(
        &dir.path().join("cache2"),
        LoadLimits {
            loading_wait: Duration::from_millis(50),
            ..LoadLimits::default()
        },
    );
    let slow_path = write(dir.path(), "slow.wasm", &generated_component(40_000, 20, 0));
    let load =
        tokio::spawn(impatient.load(PluginSpec::new("t.slow", PluginKind::Action, &slow_path)));
    let report = impatient
        .run_action("t.slow", "{}", ActionContext::default())
        .await;
    let err = report.result.unwrap_err();
    assert_eq!(err.kind(), "loading", "{err}");
    assert!(
        err.to_string().contains("`t.slow` is still loading"),
        "{err}"
    );
    let _ = load.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_exit_is_reported_as_the_plugins_exit_with_its_code() {
    let rt = stormhook_tests::runtime(RuntimeConfig::default());
    let reference = load_fixture(&rt, "exit_code", PluginKind::Action).await;
    for code in [3, 0, 1, 255] {
        let report = rt
            .run_action(
                &reference,
                &format!(r#"{{"code":{code}}}"#),
                ActionContext::default(),
            )
            .await;
        match report.result {
            Err(PluginError::Exit { code: got, .. }) => assert_eq!(got, code),
            other => panic!("code {code}: {other:?}"),
        }
        assert!(
            report
                .captured
                .stdout
                .contains(&format!("exiting with code {code}")),
            "{:?}",
            report.captured.stdout
        );
    }
    // Rust's `std::process::exit` on wasm32-wasip2 reports only failure (code 1): the host
    // reports what it was given.
    let report = rt
        .run_action(
            &reference,
            r#"{"code":3,"via":"std"}"#,
            ActionContext::default(),
        )
        .await;
    assert!(
        matches!(report.result, Err(PluginError::Exit { code: 1, .. })),
        "{:?}",
        report.result
    );
    let report = rt
        .run_action(&reference, r#"{"code":3}"#, ActionContext::default())
        .await;
    let err = report.result.unwrap_err();
    assert_eq!(err.kind(), "exit");
    assert!(
        err.to_string()
            .contains("exited with code 3 before returning a result"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_moves_to_the_background_pool_and_a_short_one_stays() {
    let rt = stormhook_tests::runtime(RuntimeConfig {
        action_defaults: stormhook_runtime::Limits {
            timeout: Duration::from_millis(200),
            memory_bytes: 32 << 20,
        },
        ..RuntimeConfig::default()
    });
    let looping = load_fixture(&rt, "loop_forever", PluginKind::Action).await;
    let noop = load_fixture(&rt, "noop_action", PluginKind::Action).await;
    let report = rt
        .run_action(&looping, "{}", ActionContext::default())
        .await;
    assert!(report.result.unwrap_err().is_timeout());
    assert!(
        report.moved,
        "a call that ran 200 ms left the caller's thread"
    );
    let report = rt.run_action(&noop, "{}", ActionContext::default()).await;
    assert!(report.result.is_ok());
    assert!(!report.moved, "a short call stays where it started");
}

/// An action whose component file was deleted is still listed (its document is there), says
/// that its component is missing, and its executions fail saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_whose_component_is_deleted_says_so_in_the_list_and_when_run() {
    let server = stormhook_tests::TestServer::builder()
        .action("gone", "noop_action", "")
        .start()
        .await;
    let action = server.get_json("/api/v1/actions/t.gone").await;
    assert_eq!(action["component"]["state"], "ready", "{action}");
    let file = server.packs.root().join("t/actions/noop_action.wasm");
    std::fs::remove_file(&file).unwrap();
    server.packs.reload().await;

    let listed = server.get_json("/api/v1/actions?pack=t").await;
    let gone = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["ref"] == "t.gone")
        .expect("still listed");
    assert_eq!(gone["component"]["state"], "missing", "{gone}");
    let why = format!("its component file {} is missing", file.display());
    assert_eq!(gone["component"]["error"], why.as_str());

    let execution: serde_json::Value = server
        .client()
        .post(server.url("/api/v1/executions?wait=10"))
        .json(&serde_json::json!({"action": "t.gone"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(
        execution["result"]["error"],
        format!("action `t.gone` cannot run: {why}").as_str()
    );
}
