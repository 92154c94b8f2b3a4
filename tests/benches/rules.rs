//! Rule evaluation per trigger instance: a 10-criteria rule (criteria keys resolved, patterns
//! rendered, operators applied) and the rendering of a rule's action parameters. WASM rule
//! evaluation per call is in `benches/runtime.rs` (`branch_filter`).
//!
//! Run: `cargo bench -p stormhook-tests --bench rules`. Results: `BENCHMARKS.md`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use stormhook_rules::evaluate_criteria;
use stormhook_rules::params::render_parameters;
use stormhook_rules::template::Renderer;

fn rules(c: &mut Criterion) {
    let payload = json!({
        "headers": {"X-Github-Event": "push", "Content-Type": "application/json"},
        "headers_lower": {"x-github-event": "push", "content-type": "application/json"},
        "body": {
            "ref": "refs/heads/main",
            "repository": {"name": "stormhook", "full_name": "acme/stormhook", "private": false, "stars": 42},
            "pusher": {"name": "ada", "email": "ada@example.com"},
            "commits": [{"id": "a1", "message": "Fix the thing", "added": ["src/a.rs"]}, {"id": "b2", "message": "Docs", "added": []}],
            "created": "2026-11-29T16:23:00Z"
        }
    });
    let criteria = json!({
        "trigger.headers_lower['x-github-event']": {"type": "equals", "pattern": "push"},
        "trigger.body.ref": {"type": "startswith", "pattern": "refs/heads/"},
        "trigger.body.ref#branch": {"type": "endswith", "pattern": "{{ st2kv.system.branch }}"},
        "trigger.body.repository.name": {"type": "iequals", "pattern": "StormHook"},
        "trigger.body.repository.full_name": {"type": "matchwildcard", "pattern": "acme/*"},
        "trigger.body.repository.private": {"type": "equals", "pattern": false},
        "trigger.body.repository.stars": {"type": "greaterthan", "pattern": 10},
        "trigger.body.pusher.email": {"type": "regex", "pattern": "@example\\.com$"},
        "trigger.body.commits[0].message": {"type": "icontains", "pattern": "fix"},
        "trigger.body.commits": {"type": "search", "condition": "any", "pattern": {"item.id": {"type": "equals", "pattern": "b2"}}}
    });
    let criteria = criteria.as_object().unwrap().clone();
    let extra = json!({"st2kv": {"system": {"branch": "main"}}})
        .as_object()
        .unwrap()
        .clone();
    let renderer = Renderer::new();
    assert!(evaluate_criteria(&criteria, &payload, &extra, &renderer).matched);

    let params = json!({
        "message": "{{ greeting }}, {{ trigger.body.pusher.name }} pushed {{ trigger.body.commits | length }} commits to {{ trigger.body.repository.full_name }}",
        "greeting": "{{ st2kv.system.greeting }}",
        "branch": "{{ rule.branch }}",
        "count": "{{ trigger.body.commits | length }}",
        "commits": "{{ trigger.body.commits }}"
    });
    let declared =
        json!({"count": {"type": "integer"}, "timeout": {"type": "integer", "default": 60}});
    let mut context = extra.clone();
    context.insert("trigger".into(), payload.clone());
    context.insert("rule".into(), json!({"branch": "main"}));
    context.insert(
        "st2kv".into(),
        json!({"system": {"branch": "main", "greeting": "Thanks"}}),
    );
    let (params, declared) = (
        params.as_object().unwrap().clone(),
        declared.as_object().unwrap().clone(),
    );
    assert!(render_parameters(&params, &declared, &context, &renderer).is_ok());

    let mut group = c.benchmark_group("rules");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("criteria: 10-criteria rule per trigger instance", |b| {
        b.iter(|| assert!(evaluate_criteria(&criteria, &payload, &extra, &renderer).matched));
    });
    group.bench_function("action parameters: 5 templates + 1 default, cast", |b| {
        b.iter(|| render_parameters(&params, &declared, &context, &renderer).unwrap());
    });
    group.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
