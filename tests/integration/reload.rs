//! Hot reload: replaced, broken and deleted components and documents, under concurrent calls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stormhook_automation::packs::PackManager;
use stormhook_runtime::{
    ActionContext, PluginError, PluginKind, PluginSpec, Runtime, RuntimeConfig,
};
use stormhook_tests::{component, eventually_every, runtime};

const ACTION_YAML: &str = "name: swap\nrunner_type: wasm\nentry_point: swap.wasm\n";

/// A packs folder with pack `t` holding action `t.swap` backed by a copy of `swap_a`.
fn pack_folder() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let actions = dir.path().join("t/actions");
    std::fs::create_dir_all(&actions).unwrap();
    std::fs::write(actions.join("swap.yaml"), ACTION_YAML).unwrap();
    std::fs::copy(component("swap_a"), actions.join("swap.wasm")).unwrap();
    (dir, actions)
}

/// Replaces `dest` the way deploy tools do: write a temporary file, then rename over.
fn replace(dest: &Path, bytes: &[u8]) {
    let tmp = dest.with_extension("tmp-upload");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

async fn version(rt: &Runtime) -> Result<String, PluginError> {
    let report = rt
        .run_action("t.swap", "{}", ActionContext::default())
        .await;
    report
        .result
        .map(|v| v["version"].as_str().unwrap_or_default().to_owned())
}

/// How often these tests look for the watcher's work: they measure how soon it is done.
const POLL: Duration = Duration::from_millis(5);

/// `Ok` when `t.swap` serves `expected`, else what it served.
async fn serves(rt: &Runtime, expected: &str) -> Result<(), String> {
    match version(rt).await {
        Ok(v) if v == expected => Ok(()),
        other => Err(format!("t.swap answered {other:?}")),
    }
}

async fn watched(
    rt: Arc<Runtime>,
    root: &Path,
) -> (Arc<PackManager>, stormhook_automation::packs::PackWatcher) {
    let manager = Arc::new(PackManager::new(root.to_owned(), rt));
    let report = manager.reload().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let watcher = manager.watch().unwrap();
    (manager, watcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_component_serves_the_new_version_within_a_second() {
    let (dir, actions) = pack_folder();
    let rt = runtime(RuntimeConfig::default());
    let (_manager, _watcher) = watched(Arc::clone(&rt), dir.path()).await;
    assert_eq!(version(&rt).await.unwrap(), "a");

    replace(
        &actions.join("swap.wasm"),
        &std::fs::read(component("swap_b")).unwrap(),
    );
    let started = Instant::now();
    eventually_every(
        POLL,
        Duration::from_secs(1),
        "the new version to serve (within one second)",
        async || serves(&rt, "b").await,
    )
    .await;
    eprintln!("hot reload took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_replacement_is_refused_and_the_old_version_keeps_serving() {
    let (dir, actions) = pack_folder();
    let rt = runtime(RuntimeConfig::default());
    let (_manager, _watcher) = watched(Arc::clone(&rt), dir.path()).await;

    replace(
        &actions.join("swap.wasm"),
        b"\0asm\x0d\0\x01\0 truncated upload",
    );
    eventually_every(
        POLL,
        Duration::from_secs(2),
        "the broken version to be reported",
        async || {
            let list = rt.list();
            if list
                .iter()
                .any(|i| i.reference == "t.swap" && i.last_error.is_some())
            {
                return Ok(());
            }
            Err(format!("{list:?}"))
        },
    )
    .await;
    let info = rt
        .list()
        .into_iter()
        .find(|i| i.reference == "t.swap")
        .unwrap();
    assert!(
        info.last_error
            .unwrap()
            .contains("not a valid WebAssembly component")
    );
    assert!(info.version.is_some(), "the old version is still listed");
    assert_eq!(
        version(&rt).await.unwrap(),
        "a",
        "the old version keeps serving"
    );

    // Not WebAssembly at all: the error (wasmtime pretty-prints the bytes it expected) is one
    // line, for the log and for `plugin list`.
    replace(&actions.join("swap.wasm"), b"garbage, not a component");
    let last_error = || {
        rt.list()
            .into_iter()
            .find(|i| i.reference == "t.swap")
            .and_then(|i| i.last_error)
            .unwrap_or_default()
    };
    eventually_every(
        POLL,
        Duration::from_secs(2),
        "the garbage file to be refused",
        async || {
            let error = last_error();
            if error.contains("magic") {
                return Ok(());
            }
            Err(format!("last error: {error:?}"))
        },
    )
    .await;
    assert!(!last_error().contains('\n'), "{}", last_error());

    // Fixing the file clears the error and serves the fix.
    replace(
        &actions.join("swap.wasm"),
        &std::fs::read(component("swap_b")).unwrap(),
    );
    // The new version serves a moment before its load is recorded as ended (which clears the
    // error): both are waited for.
    eventually_every(
        POLL,
        Duration::from_secs(2),
        "the fixed file to serve and its error to clear",
        async || {
            serves(&rt, "b").await?;
            let info = rt
                .list()
                .into_iter()
                .find(|i| i.reference == "t.swap")
                .ok_or_else(|| "t.swap is not listed".to_owned())?;
            match info.last_error {
                None => Ok(()),
                Some(error) => Err(format!("still showing the last error: {error}")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_document_is_refused_with_its_line_and_the_old_version_keeps_serving() {
    let (dir, actions) = pack_folder();
    let rt = runtime(RuntimeConfig::default());
    let manager = PackManager::new(dir.path().to_owned(), Arc::clone(&rt));
    assert!(manager.reload().await.errors.is_empty());

    std::fs::write(
        actions.join("swap.yaml"),
        "name: swap\nrunner_type: [wasm\nentry_point: swap.wasm\n",
    )
    .unwrap();
    let report = manager.reload().await;
    assert_eq!(report.errors.len(), 1, "{report:?}");
    let message = &report.errors[0];
    assert!(message.contains("swap.yaml:"), "{message}");
    assert!(
        message
            .split(':')
            .nth(1)
            .is_some_and(|line| line.parse::<u32>().is_ok()),
        "has a line: {message}"
    );
    assert_eq!(version(&rt).await.unwrap(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_component_or_the_document_stops_offering_the_plugin() {
    for victim in ["swap.wasm", "swap.yaml"] {
        let (dir, actions) = pack_folder();
        let rt = runtime(RuntimeConfig::default());
        let (_manager, _watcher) = watched(Arc::clone(&rt), dir.path()).await;
        assert!(version(&rt).await.is_ok());
        std::fs::remove_file(actions.join(victim)).unwrap();
        eventually_every(
            POLL,
            Duration::from_secs(1),
            &format!("deleting {victim} to unload the plugin (within a second)"),
            async || match version(&rt).await {
                Err(PluginError::NotFound { .. }) => Ok(()),
                other => Err(format!("t.swap answered {other:?}")),
            },
        )
        .await;
        assert!(
            rt.list()
                .iter()
                .all(|i| i.reference != "t.swap" || i.version.is_none())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_under_concurrent_calls_fail_no_call() {
    let rt = runtime(RuntimeConfig::default());
    let spec = |name: &str| PluginSpec::new("t.swap", PluginKind::Action, component(name));
    rt.load(spec("swap_a")).await.unwrap();
    rt.load(spec("swap_b")).await.unwrap(); // Compile both once, outside the measured loop.

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen_a = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (rt, stop, ok, failed, seen_a) = (
                Arc::clone(&rt),
                stop.clone(),
                ok.clone(),
                failed.clone(),
                seen_a.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match version(&rt).await {
                        Ok(v) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if v == "a" {
                                seen_a.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(err) => {
                            eprintln!("call failed during swaps: {err}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for i in 0..100 {
        let next = if i % 2 == 0 { "swap_a" } else { "swap_b" };
        rt.load(spec(next)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    let (ok, failed, seen_a) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        seen_a.load(Ordering::Relaxed),
    );
    eprintln!("{ok} calls during 100 swaps, {failed} failed, {seen_a} saw version a");
    assert_eq!(failed, 0);
    assert!(ok >= 100, "calls ran during the swaps: {ok}");
    assert!(
        seen_a > 0 && seen_a < ok,
        "both versions served: {seen_a} of {ok}"
    );
    assert_eq!(version(&rt).await.unwrap(), "b", "the last swap wins");
}
