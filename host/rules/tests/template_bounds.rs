//! Templates are bounded in time and memory: a template that would loop for hours or allocate
//! gigabytes fails with a clear error instead, quickly. Also: `{% macro %}`/`{% call %}` work,
//! and `range()` is not a parameter dependency.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stormhook_rules::evaluate_criteria;
use stormhook_rules::params::render_parameters;
use stormhook_rules::template::{
    FUEL, MAX_ELIF_BRANCHES, MAX_EXPRESSION_OPERATORS, MAX_OUTPUT_BYTES, MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH, Renderer,
};

/// Generous for a debug build on a loaded CI machine; a release build takes well under 0.3 s
/// for any of these.
const QUICKLY: Duration = Duration::from_secs(5);

fn render(template: &str) -> Result<Value, String> {
    let context = json!({"trigger": {"body": {"n": 3, "items": [1, 2, 3], "name": "ada"}}});
    render_with(template, &context)
}

fn render_with(template: &str, context: &Value) -> Result<Value, String> {
    let started = Instant::now();
    let out = Renderer::new().render(&json!(template), context);
    let took = started.elapsed();
    assert!(took < QUICKLY, "{template:?} took {took:?}");
    out
}

/// Renders `template`, expecting an error that contains `expected`.
#[track_caller]
fn fails(template: &str, expected: &str) {
    match render(template) {
        Ok(v) => panic!("{template:?} rendered {} bytes", v.to_string().len()),
        Err(e) => assert!(e.contains(expected), "{template:?}: {e}"),
    }
}

fn too_large() -> String {
    format!("value larger than {MAX_VALUE_BYTES} bytes")
}

const OUT_OF_FUEL: &str = "template exceeded its fuel (too many steps)";

#[test]
fn the_bounds_are_what_the_documentation_says() {
    assert_eq!(FUEL, 1_000_000);
    assert_eq!(MAX_OUTPUT_BYTES, 8 << 20);
    assert_eq!(MAX_VALUE_BYTES, 8 << 20);
    assert_eq!(MAX_VALUE_DEPTH, 256);
    assert_eq!(MAX_EXPRESSION_OPERATORS, 1_000);
    assert_eq!(MAX_ELIF_BRANCHES, 500);
}

#[test]
fn a_nested_loop_runs_out_of_fuel_quickly() {
    let poison = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let err = render(poison).unwrap_err();
    assert!(err.starts_with(OUT_OF_FUEL), "{err}");
    assert!(err.contains("engine ran out of fuel"), "{err}");
    // The same loop doing work in its body, through the checked operators.
    fails(
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j * 2.5 ~ 'x' }}{% endfor %}{% endfor %}",
        OUT_OF_FUEL,
    );
    // As a criteria pattern: the criterion fails with the reason, the engine goes on.
    let criteria = json!({"trigger.n": {"type": "equals", "pattern": poison}});
    let outcome = evaluate_criteria(
        criteria.as_object().unwrap(),
        &json!({"n": 1}),
        &serde_json::Map::new(),
        &Renderer::new(),
    );
    assert!(!outcome.matched);
    assert!(outcome.error.unwrap().to_string().contains(OUT_OF_FUEL));
    // As an action parameter.
    let params = json!({"p": poison});
    let err = render_parameters(
        params.as_object().unwrap(),
        &serde_json::Map::new(),
        &serde_json::Map::new(),
        &Renderer::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("Failed to render parameter \"p\": {OUT_OF_FUEL}")),
        "{err}"
    );
}

#[test]
fn ordinary_loops_still_render() {
    let expected: String = (0..300).map(|i| format!("{i},")).collect();
    assert_eq!(
        render("{% for i in range(300) %}{{ i }},{% endfor %}").unwrap(),
        json!(expected)
    );
    // A few thousand iterations of a body with some work in it.
    let out = render(
        "{% for i in range(5000) %}{% if i % 3 == 0 %}{{ i ~ '-' ~ (i * 2) }}{% else %}\
         {{ [i, i + 1]|join(':') }}{% endif %}{% endfor %}",
    )
    .unwrap();
    assert!(out.as_str().unwrap().starts_with("0-01:22:33-6"), "{out}");
    // A loop over the payload.
    assert_eq!(
        render("{% for x in trigger.body['items'] %}{{ x * 10 }}{% if not loop.last %},{% endif %}{% endfor %}")
            .unwrap(),
        json!("10,20,30")
    );
}

#[test]
fn string_amplification_fails() {
    // Doubling a string: inside a plain loop, `set` is scoped to the iteration (as in Jinja2),
    // so this stays small; with a namespace or recursion it doubles until refused.
    assert_eq!(
        render(
            "{% set s = 'x' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}{{ s|length }}"
        )
        .unwrap(),
        json!("1")
    );
    fails(
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        &too_large(),
    );
    fails(
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
        &too_large(),
    );
    fails(
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ d('x', 40) }}",
        &too_large(),
    );
    fails("{{ 'x' * 10000000000 }}", &too_large());
    fails(
        "{{ ('x' * 100000)|replace('x', 'x' * 100000) }}",
        &too_large(),
    );
    fails("{{ ('x' * 10000)|replace('', 'y' * 10000) }}", &too_large());
}

#[test]
fn filter_amplification_fails() {
    let s = "{% set s = 'x' %}{% set one = [1] %}";
    fails(
        &format!("{s}{{{{ (one * 100000)|join('y' * 1000) }}}}"),
        &too_large(),
    );
    fails(
        &format!("{s}{{{{ [1]|join('y' * 100000000) }}}}"),
        &too_large(),
    );
    fails(
        &format!("{s}{{{{ ((s ~ '\\n') * 100000)|indent(1000) }}}}"),
        &too_large(),
    );
    fails("{{ '%100000000s'|format(1) }}", &too_large());
    // Rust's formatter panics on `{:.65535e}`, below minijinja's own cap.
    for spec in ["%.65535e", "%.70000e", "{:.65535e}", "%.65535f"] {
        fails(
            &format!("{{{{ '{spec}'|format(1.5) }}}}"),
            "precision too large: at most 65534",
        );
    }
    assert_eq!(
        render("{{ ('%.65534e'|format(1.5))|length }}").unwrap(),
        json!(65540)
    );
    fails("{{ [1, 2, 3]|tojson(indent=100000000) }}", &too_large());
    fails(
        &format!("{s}{{{{ ('<' * 2000000)|escape }}}}"),
        &too_large(),
    );
    fails(
        &format!("{s}{{{{ (one * 100000000)|string }}}}"),
        &too_large(),
    );
    fails(
        &format!("{s}{{{{ (one * 100000000)|length }}}}"),
        &too_large(),
    );
    // `sum` of strings or lists is linear (minijinja's copies the total for every item).
    assert_eq!(
        render("{% set one = [1] %}{% set l = [one] * 100000 %}{{ l|sum(start=[])|length }}")
            .unwrap(),
        json!("100000")
    );
    // `center` does not exist in minijinja.
    fails("{{ 'x'|center(100000000) }}", "filter center is unknown");
}

#[test]
fn sequence_amplification_fails() {
    let one = "{% set one = [1] %}";
    // minijinja makes these lazy sequences; printing, comparing or concatenating them would
    // walk 10^8 or 10^16 items.
    fails(&format!("{one}{{{{ one * 100000000 }}}}"), &too_large());
    fails(
        &format!("{one}{{{{ '' ~ (one * 100000000) }}}}"),
        &too_large(),
    );
    fails(
        &format!("{one}{{{{ (one * 100000000) == (one * 100000000) }}}}"),
        &too_large(),
    );
    fails(
        &format!("{one}{{{{ [one * 100000000] * 100000000 }}}}"),
        &too_large(),
    );
    // Doubling a list by concatenation (lazy in minijinja, then materialized at depth 32).
    let err = render(&format!(
        "{one}{{% set ns = namespace(l=one) %}}{{% for i in range(60) %}}{{% set ns.l = ns.l + ns.l %}}{{% endfor %}}{{{{ ns.l|length }}}}"
    ))
    .unwrap_err();
    assert!(
        err.contains(OUT_OF_FUEL) || err.contains(&too_large()),
        "{err}"
    );
    // Sharing: each level is ten references to the one below.
    let err = render(
        "{% set one = [1] %}{% set a = one * 100000 %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}\
         {% set c = [b,b,b,b,b,b,b,b,b,b] %}{{ c ~ '' }}",
    )
    .unwrap_err();
    assert!(
        err.contains(OUT_OF_FUEL) || err.contains(&too_large()),
        "{err}"
    );
    // Constant repetition is evaluated while compiling, before any bound applies: refused.
    fails(
        "{{ '' ~ ([1] * 100000000) }}",
        "repeating a constant list or tuple",
    );
    fails(
        "{{ (1,) * 100000000 }}",
        "repeating a constant list or tuple",
    );
    // Tuples are built eagerly: checked before.
    fails("{% set t = (1,) %}{{ t * 100000000 }}", &too_large());
    // A small repetition of a variable is fine.
    assert_eq!(
        render("{% set z = [0] %}{{ z * 3 }}").unwrap(),
        json!("[0, 0, 0]")
    );
}

#[test]
fn self_containing_values_fail_instead_of_overflowing_the_stack() {
    let cycle = "{% set ns = namespace() %}{% set ns.x = ns %}";
    let deep = format!("value nested deeper than {MAX_VALUE_DEPTH} levels");
    for use_it in [
        "{{ ns }}",
        "{{ ns ~ '' }}",
        "{{ ns == ns }}",
        "{{ 0 < ns < 1 }}",
        "{{ ns|tojson }}",
        "{{ {ns: 1} }}",
        "{{ {'a': 1}[ns] }}",
        "{{ ns is eq(ns) }}",
        "{% for i in range(2) %}{{ loop.changed(ns) }}{% endfor %}",
    ] {
        fails(&format!("{cycle}{use_it}"), &deep);
    }
}

#[test]
fn output_is_capped() {
    let err = render("{% set s = 'x' %}{% for i in range(20000) %}{{ s * 1000 }}{% endfor %}")
        .unwrap_err();
    assert_eq!(
        err,
        format!("rendered output larger than {MAX_OUTPUT_BYTES} bytes")
    );
}

#[test]
fn long_operator_chains_fail_instead_of_overflowing_the_stack() {
    let limit = format!("expression with more than {MAX_EXPRESSION_OPERATORS} operators");
    fails(&format!("{{{{ {}1 }}}}", "1 + ".repeat(10_000)), &limit);
    fails(&format!("{{{{ {}1 }}}}", "-".repeat(10_000)), &limit);
    fails(&format!("x{{{{ 1{} }}}}", "|abs".repeat(10_000)), &limit);
    fails(
        &format!("{{% if {}1 %}}{{% endif %}}", "not ".repeat(10_000)),
        &limit,
    );
    fails(
        &format!(
            "{{% if trigger.body.n == 0 %}}{}{{% endif %}}",
            "{% elif trigger.body.n == 0 %}".repeat(5_000)
        ),
        &format!("more than {MAX_ELIF_BRANCHES} elif branches"),
    );
    // Long literals do not nest: a lookup table of a few thousand entries is fine.
    let table: Vec<String> = (0..3_000).map(|i| format!("'k{i}': {i}")).collect();
    assert_eq!(
        render(&format!(
            "{{% set t = {{{}}} %}}{{{{ t['k2999'] }}}}",
            table.join(", ")
        )),
        Ok(json!("2999"))
    );
    // Right at the limits, the deepest nesting still fits a debug build's 2 MiB test thread.
    let deepest = format!(
        "{{% if trigger.body.n == 0 %}}{}{{% elif true %}}{}{{{{ {}1 }}}}{}{{% endif %}}",
        "{% elif trigger.body.n == 0 %}".repeat(MAX_ELIF_BRANCHES - 1),
        "{% if true %}".repeat(140),
        "-".repeat(MAX_EXPRESSION_OPERATORS),
        "{% endif %}".repeat(140),
    );
    assert_eq!(render(&deepest), Ok(json!("1")));
    // Recursion is limited by minijinja.
    fails(
        "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}",
        "recursion limit exceeded",
    );
}

#[test]
fn large_payloads_pass_through() {
    // About 4.8 MB of JSON, more than the default webhook body limit.
    let items: Vec<Value> = (0..40_000)
        .map(|i| json!({"id": i, "name": format!("item-{i}"), "tags": ["a", "b"], "payload": "y".repeat(40)}))
        .collect();
    let context = json!({"trigger": {"body": {"items": items}}});
    assert_eq!(
        render_with("{{ trigger.body }}", &context).unwrap(),
        context["trigger"]["body"]
    );
    let json = render_with("{{ trigger.body | tojson }}", &context).unwrap();
    let decoded: Value = serde_json::from_str(json.as_str().unwrap()).unwrap();
    assert_eq!(decoded, context["trigger"]["body"]);
    assert_eq!(
        render_with("{{ trigger.body['items'] | length }}", &context).unwrap(),
        json!(40_000)
    );
}

#[test]
fn operators_keep_their_meaning() {
    let cases = [
        ("{{ trigger.body.n * 2 }}", json!(6)),
        ("{{ trigger.body.n + 0.5 }}", json!(3.5)),
        ("{{ trigger.body.n * 2.5 }}", json!(7.5)),
        ("{{ 'ab' + 'cd' }}", json!("abcd")),
        ("{{ 'ab' ~ 1 ~ [2] }}", json!("ab1[2]")),
        ("{{ trigger.body['items'] + [4] }}", json!([1, 2, 3, 4])),
        ("{{ trigger.body['items'] * 2 }}", json!([1, 2, 3, 1, 2, 3])),
        ("{{ 'ab' * 3 }}", json!("ababab")),
        ("{{ 3 * 'ab' }}", json!("ababab")),
        ("{{ (1, 2) + (3,) }}", json!([1, 2, 3])),
        ("{{ 2 ** 10 }}", json!(1024)),
        (
            "{{ 9223372036854775807 + 1 }}",
            json!(9223372036854775808u64),
        ),
        ("{{ {'a': 1, 'b': [1, 2]} }}", json!({"a": 1, "b": [1, 2]})),
        ("{{ {'a': 1}['a'] }}", json!(1)),
        ("{{ trigger.body['items'][-1] }}", json!(3)),
        ("{{ 1 == 1.0 }}", json!(true)),
        ("{{ [1, 2] < [1, 3] }}", json!(true)),
        ("{{ 2 in trigger.body['items'] }}", json!(true)),
        ("{{ 'd' in trigger.body.name }}", json!(true)),
        ("{{ 5 not in trigger.body['items'] }}", json!(true)),
        ("{{ not (2 in trigger.body['items']) }}", json!(false)),
        ("{{ 1 < 2 < 3 }}", json!(true)),
        ("{{ 3 < 2 < 1 }}", json!(false)),
        ("{{ 1 < 2 > 0 }}", json!(true)),
        ("{{ 1 < 2 < 0 }}", json!(false)),
        ("{{ 1 in [1] not in [[2]] }}", json!(true)),
        ("{{ not (1 < 2 in [3]) }}", json!(true)),
        // `or` jumps to the `not` directly: the two must stay separate instructions.
        (
            "{% set t = true %}{% set x = [2] %}{{ not (t or 1 in x) }}",
            json!("False"),
        ),
        (
            "{% set f = false %}{% set x = [2] %}{{ not (f or 1 in x) }}",
            json!("True"),
        ),
        (
            "{% set t = true %}{{ not (t and 1 < 2 < 3) }}",
            json!("False"),
        ),
        ("{{ (trigger.missing if false) ~ 'x' }}", json!("x")),
        ("{{ [1, 2][5] is defined }}", json!(false)),
    ];
    for (template, expected) in cases {
        assert_eq!(render(template), Ok(expected.clone()), "{template}");
    }
    // Strict undefined still applies to the checked operators.
    for template in [
        "x{{ trigger.missing ~ 'x' }}",
        "x{{ trigger.missing == 1 }}",
        "x{{ {'a': 1}['b'] }}",
    ] {
        assert!(
            render(template).unwrap_err().contains("undefined value"),
            "{template}"
        );
    }
    fails("{{ [1, 2] + (3,) }}", "unsupported types");
    // Auto escaping: concatenating safe and unsafe strings escapes the unsafe one.
    assert_eq!(
        render("{% autoescape true %}{{ '<b>'|safe ~ '<i>' }} {{ '<b>'|safe + '<i>' }}{% endautoescape %}")
            .unwrap(),
        json!("<b>&lt;i&gt; <b>&lt;i&gt;")
    );
}

#[test]
fn filters_keep_their_meaning() {
    let cases = [
        ("{{ 'abc'|replace('b', 'X') }}", json!("aXc")),
        ("{{ 'aaa'|replace('a', 'b', 2) }}", json!("bba")),
        ("{{ 'aaa'|replace('a', 'b', count=1) }}", json!("baa")),
        ("{{ [1, 2, 3]|join('-') }}", json!("1-2-3")),
        ("{{ [1, 2]|sum }}", json!(3)),
        ("{{ [[1], [2]]|sum(start=[]) }}", json!([1, 2])),
        ("{{ ['a', 'b']|sum(start='') }}", json!("ab")),
        ("{{ [{'n': 1}, {'n': 2}]|sum(attribute='n') }}", json!(3)),
        ("{{ 'a\nb'|indent(2) }}", json!("a\n  b")),
        ("{{ {'b': 1}|tojson }}", json!("{\"b\": 1}")),
        ("{{ '%s-%d'|format('x', 3) }}", json!("x-3")),
        ("{{ '<a>'|e }}", json!("&lt;a&gt;")),
        ("{{ [3, 1, 2]|sort }}", json!([1, 2, 3])),
        ("{{ range(3)|list }}", json!([0, 1, 2])),
        ("{{ dict(a=1) }}", json!({"a": 1})),
        ("{{ [1, 2, 3]|map('string')|join }}", json!("123")),
        ("{{ [1, 2, 3]|select('odd')|list }}", json!([1, 3])),
        ("{{ trigger.body.name|upper }}", json!("ADA")),
        ("{{ trigger.body|dictsort|length }}", json!(3)),
        ("{{ 3 is odd }}", json!(true)),
        ("{{ 'ab' is startingwith('a') }}", json!(true)),
        ("{{ 'upper' is filter }}", json!(true)),
    ];
    for (template, expected) in cases {
        assert_eq!(render(template), Ok(expected.clone()), "{template}");
    }
    // `debug()` would dump the whole context: not available.
    fails("{{ debug() }}", "debug is unknown");
}

#[test]
fn macros_and_call_blocks_work() {
    assert_eq!(
        render("{% macro greet(who) %}hi {{ who }}{% endmacro %}{{ greet(trigger.body.name) }}")
            .unwrap(),
        json!("hi ada")
    );
    assert_eq!(
        render(
            "{% macro wrap(tag='b') %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}\
             {% call wrap('i') %}{{ trigger.body.name }}{% endcall %}"
        )
        .unwrap(),
        json!("<i>ada</i>")
    );
    // In a criteria pattern.
    let criteria = json!({"trigger.name": {"type": "equals",
        "pattern": "{% macro up(s) %}{{ s|upper }}{% endmacro %}{{ up('ada') }}"}});
    let outcome = evaluate_criteria(
        criteria.as_object().unwrap(),
        &json!({"name": "ADA"}),
        &serde_json::Map::new(),
        &Renderer::new(),
    );
    assert!(outcome.matched, "{outcome:?}");
    // In an action parameter, next to a parameter it depends on.
    let params = json!({
        "who": "ada",
        "msg": "{% macro hi(n) %}hi {{ n }}{{ caller() if caller is defined }}{% endmacro %}{% call hi(who) %}?{% endcall %} {{ hi(who) }}!"
    });
    let out = render_parameters(
        params.as_object().unwrap(),
        &serde_json::Map::new(),
        &serde_json::Map::new(),
        &Renderer::new(),
    )
    .unwrap();
    assert_eq!(out["msg"], json!("hi ada? hi ada!"));
}

#[test]
fn range_is_not_a_parameter_dependency() {
    let render = |params: Value, context: Value| {
        render_parameters(
            params.as_object().unwrap(),
            &serde_json::Map::new(),
            context.as_object().unwrap(),
            &Renderer::new(),
        )
        .map(Value::Object)
    };
    assert_eq!(
        render(
            json!({"n": "{% for i in range(3) %}{{ i }}{% endfor %}"}),
            json!({})
        ),
        Ok(json!({"n": "012"}))
    );
    assert_eq!(
        render(
            json!({
                "d": "{{ dict(a=1) }}",
                "ns": "{% set ns = namespace(c=0) %}{% for x in xs %}{% set ns.c = ns.c + x %}{% endfor %}{{ ns.c }}",
                "xs": [1, 2, 3]
            }),
            json!({})
        ),
        // Untyped parameters render as text, as in StackStorm.
        Ok(json!({"d": "{'a': 1}", "ns": "6", "xs": [1, 2, 3]}))
    );
    // A parameter of the same name shadows the function and is a dependency.
    assert_eq!(
        render(json!({"range": "{{ 2 }}", "r": "{{ range }}"}), json!({})),
        Ok(json!({"range": "2", "r": "2"}))
    );
    // Other unknown names still are unsatisfied dependencies.
    assert_eq!(
        render(
            json!({"n": "{% for i in ranges(3) %}{% endfor %}"}),
            json!({})
        ),
        Err(stormhook_rules::params::ParamsError::DependencyUnsatisfied(
            "ranges".to_owned()
        ))
    );
}
