//! Per-call cost of the runtime: instantiate + call + drop of a trivial rule and a trivial
//! action, with the full per-call setup the server uses (registry lookup, instance slot, fresh
//! store with a WASI context and bounded stdio capture, memory limiter, epoch deadline).
//!
//! Run: `cargo bench -p stormhook-tests --bench runtime`. Results: `BENCHMARKS.md`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use stormhook_runtime::{ActionContext, PluginKind, RuntimeConfig, TriggerInstance};
use stormhook_tests::{load_fixture, runtime};

fn calls(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rt = runtime(RuntimeConfig::default());
    let (rule, action, filter) = tokio.block_on(async {
        (
            load_fixture(&rt, "noop_rule", PluginKind::Rule).await,
            load_fixture(&rt, "noop_action", PluginKind::Action).await,
            load_fixture(&rt, "branch_filter", PluginKind::Rule).await,
        )
    });
    let instance = TriggerInstance {
        id: "5f0000000000000000000001".into(),
        trigger: "core.st2.webhook".into(),
        payload: r#"{"headers":{"Content-Type":"application/json"},"headers_lower":{"content-type":"application/json"},"body":{"ref":"refs/heads/main"}}"#.into(),
        occurrence_time: "2026-11-29T16:23:00.000000Z".into(),
    };
    let params = r#"{"name":"Ada","count":3}"#;

    let mut group = c.benchmark_group("call");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("rule: instantiate+evaluate+drop", |b| {
        b.iter(|| {
            let report = tokio.block_on(rt.evaluate_rule(&rule, &instance));
            assert!(report.result.is_ok());
        });
    });
    group.bench_function("action: instantiate+run+drop", |b| {
        b.iter(|| {
            let report = tokio.block_on(rt.run_action(&action, params, ActionContext::default()));
            assert!(report.result.is_ok());
        });
    });
    // A realistic rule: parses the payload with serde_json and returns values.
    group.bench_function("rule: branch_filter on a push payload", |b| {
        b.iter(|| {
            let report = tokio.block_on(rt.evaluate_rule(&filter, &instance));
            assert!(report.result.as_ref().is_ok_and(|d| d.matched));
        });
    });
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
