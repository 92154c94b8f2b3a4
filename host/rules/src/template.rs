//! Jinja rendering of criteria patterns (minijinja: sandboxed by design, unlike the Jinja2 that
//! gave StackStorm a remote-code-execution CVE).
//!
//! - Undefined variables are errors (StackStorm renders with `StrictUndefined`), except keys
//!   of the datastore: `{{ st2kv.system.missing }}` is `""`, as StackStorm's `KeyValueLookup`
//!   renders it (see `kv.rs`).
//! - Values print as Python's `str()` prints them (`True`, `None`, `['a', 1]`), `%` formats
//!   strings as Python does (`{{ "%s-%d" % (a, b) }}`), and StackStorm's own filters
//!   (`to_json_string`, `regex_replace`, `version_compare`, ...; `filters/`) are available.
//! - A template that is a single `{{ expression }}` keeps the expression's type, so lists,
//!   objects and numbers survive.
//! - A criteria pattern ([`Renderer::render_pattern`]) is StackStorm's `to_complex` rewrite:
//!   each line's `{{ ... }}` is rendered as JSON and the whole result decoded, so a multi-line
//!   `{% for %}` that builds a JSON list compares as a list; when the result is not JSON the
//!   plain rendering is used.
//! - Non-string patterns are used as they are.
//! - `{% macro %}` and `{% call %}` work, as in StackStorm's Jinja.
//! - `st2kv.system.<key>` of a secret is its ciphertext, as in StackStorm; the `decrypt_kv`
//!   filter decrypts it (`{{ st2kv.system.token | decrypt_kv }}`) with the function given to
//!   [`Renderer::with_decrypt_kv`], since this crate does no IO and holds no key. Without one,
//!   the filter fails the render with a message that says so.
//!
//! # Bounds
//!
//! Templates come from users and are rendered with webhook data, so a render is bounded in time
//! and memory and fails (never hangs) when a bound is hit:
//!
//! - [`FUEL`] steps per render (instructions, data produced, items visited): a nested
//!   `range(100000)` loop fails with `template exceeded its fuel (too many steps): ...`.
//! - A rendered string of at most [`MAX_OUTPUT_BYTES`] (`rendered output larger than ... bytes`).
//! - No value larger than [`MAX_VALUE_BYTES`] or nested deeper than [`MAX_VALUE_DEPTH`] is
//!   produced or operated on (`value larger than ... bytes`): string and list repetition,
//!   concatenation, `replace`, `join`, `indent`, `format`, `tojson`, ... are sized before they
//!   allocate, and values that share or contain themselves are not walked without bound.
//! - At most [`MAX_EXPRESSION_OPERATORS`] operators per `{{ }}` / `{% %}` block and
//!   [`MAX_ELIF_BRANCHES`] `elif`s per template (the parser recurses once per operator and per
//!   `elif`; deeper, it overflows the stack).
//!
//! How this is done, and what is bounded only by fuel, is described in `sandbox.rs`.

use std::sync::Arc;

use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value;

pub use crate::sandbox::{
    FUEL, MAX_ELIF_BRANCHES, MAX_EXPRESSION_OPERATORS, MAX_OUTPUT_BYTES, MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
};
use crate::{kv, sandbox};

/// A configured Jinja environment. Build once, share.
pub struct Renderer {
    env: Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renderer")
    }
}

impl Renderer {
    /// A renderer with strict undefined behaviour and the bounds of this module.
    pub fn new() -> Self {
        let renderer = Self {
            env: sandbox::environment(),
        };
        renderer
            .with_decrypt_kv(|_| Err("no datastore key is available to this renderer".to_owned()))
    }

    /// This renderer, with a `decrypt_kv` filter that decrypts with `decrypt` (a datastore
    /// ciphertext in, the plaintext or an error message that names no value out).
    pub fn with_decrypt_kv(
        mut self,
        decrypt: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        let decrypt = Arc::new(decrypt);
        let filter = minijinja::Value::from_function(move |value: minijinja::Value| {
            let invalid = |m: String| Error::new(ErrorKind::InvalidOperation, m);
            // A missing datastore key (or one that holds ""): StackStorm names it.
            if let Some(lookup) = value.downcast_object_ref::<kv::Lookup>()
                && value.to_string().is_empty()
            {
                return Err(invalid(format!(
                    "Referenced datastore item \"{}\" doesn't exist or it contains an empty string",
                    lookup.key_name()
                )));
            }
            let value = kv::as_text(value);
            let Some(ciphertext) = value.as_str() else {
                return Err(invalid(format!(
                    "decrypt_kv: expected a secret's ciphertext (a string), got {}",
                    value.kind()
                )));
            };
            if ciphertext.is_empty() {
                return Err(invalid(
                    "decrypt_kv: the value is empty (the datastore item does not exist or holds an empty string)".into(),
                ));
            }
            decrypt(ciphertext)
                .map(minijinja::Value::from)
                .map_err(|e| invalid(format!("decrypt_kv: {e}")))
        });
        sandbox::add_guarded_filter(&mut self.env, "decrypt_kv", filter);
        self
    }

    /// Renders `pattern` with `context` (an object: `trigger`, `st2kv`, ...).
    ///
    /// # Errors
    ///
    /// The template does not parse, refers to something undefined, or exceeds a bound; the
    /// message is minijinja's, or names the bound.
    pub fn render(&self, pattern: &Value, context: &Value) -> Result<Value, String> {
        let Value::String(text) = pattern else {
            return Ok(pattern.clone());
        };
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(pattern.clone());
        }
        let ctx = kv::context(context);
        if let Some(expr) = single_expression(text) {
            let value =
                sandbox::eval(&self.env, expr, ctx.clone()).map_err(|e| match e.kind() {
                    // Strict mode stops at the first missing step; say which, as Jinja2 does,
                    // or name the whole expression.
                    ErrorKind::UndefinedError => undefined_message(&e, context)
                        .unwrap_or_else(|| format!("undefined value: {expr}")),
                    _ => describe(&e, context),
                })?;
            if value.is_undefined() {
                return Err(jinja2_undefined(expr, context)
                    .unwrap_or_else(|| format!("undefined value: {expr}")));
            }
            if let Ok(value) = serde_json::to_value(&value) {
                return Ok(value);
            }
        }
        sandbox::render(&self.env, text, ctx)
            .map(Value::String)
            .map_err(|e| describe(&e, context))
    }

    /// Renders a criteria pattern as StackStorm's `RuleFilter._render_criteria_pattern` does
    /// (`docs/st2-jinja-filters.md` §4): a single `{{ expression }}` keeps its type; otherwise,
    /// if the pattern has a `{{ ... }}`, each line's expression (from its first `{{` to its last
    /// `}}`) gets `| to_complex` and the rendered text is decoded as JSON; when that fails, or
    /// the text is not JSON, the pattern is rendered as plain text.
    ///
    /// # Errors
    ///
    /// As [`Renderer::render`].
    pub fn render_pattern(&self, pattern: &Value, context: &Value) -> Result<Value, String> {
        let Value::String(text) = pattern else {
            return Ok(pattern.clone());
        };
        if single_expression(text).is_none()
            && let Some(complex) = to_complex_rewrite(text)
            && let Ok(rendered) = sandbox::render(&self.env, &complex, kv::context(context))
            && let Ok(value) = serde_json::from_str::<Value>(&rendered)
        {
            return Ok(value);
        }
        self.render(pattern, context)
    }

    /// Renders `template` as text, whatever it is (Jinja2's `render`).
    ///
    /// # Errors
    ///
    /// As [`Renderer::render`].
    pub fn render_text(&self, template: &str, context: &Value) -> Result<String, String> {
        sandbox::render(&self.env, template, kv::context(context))
            .map_err(|e| describe(&e, context))
    }
}

/// The message of a render error: Jinja2's for an undefined path (what StackStorm reports,
/// e.g. `Failed to render parameter "a2": 'dict object' has no attribute 'lorem_ipsum'`), the
/// bare message of an invalid operation (a filter's or `%`'s error, as Python's exception says
/// it: `Referenced datastore item "st2kv.system.secret" doesn't exist or it contains an empty
/// string`), else minijinja's.
fn describe(err: &Error, context: &Value) -> String {
    match err.kind() {
        ErrorKind::UndefinedError => {
            if let Some(message) = undefined_message(err, context) {
                return message;
            }
        }
        ErrorKind::InvalidOperation => {
            if let Some(detail) = err.detail() {
                return detail.to_owned();
            }
        }
        _ => {}
    }
    sandbox::describe(err)
}

/// Jinja2's message for the undefined expression minijinja names in `err`
/// ("`a.b` is undefined").
fn undefined_message(err: &Error, context: &Value) -> Option<String> {
    let detail = err.detail()?;
    let start = detail.find('`')? + 1;
    let end = start + detail[start..].find("` is undefined")?;
    jinja2_undefined(&detail[start..end], context)
}

/// Jinja2's `StrictUndefined` message for the first step of the path `expr` that `context`
/// lacks (`Undefined._undefined_message`): `'x' is undefined`, `'dict object' has no attribute
/// 'y'`, `list object has no element 3`. `None` when `expr` is not a plain path of names,
/// `.attr`, `[n]` and `['key']` steps, or when it resolves.
fn jinja2_undefined(expr: &str, context: &Value) -> Option<String> {
    enum Step<'a> {
        Key(&'a str),
        Index(i64),
    }
    let is_name = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    let expr = expr.trim();
    let name_end = expr.find(['.', '[']).unwrap_or(expr.len());
    let (name, mut rest) = expr.split_at(name_end);
    if !is_name(name) {
        return None;
    }
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            if !is_name(key) {
                return None;
            }
            steps.push(Step::Key(key));
            rest = &after[end..];
        } else {
            let after = rest.strip_prefix('[')?;
            let end = after.find(']')?;
            let inner = after[..end].trim();
            let quoted = ['\'', '"']
                .iter()
                .find_map(|q| inner.strip_prefix(*q)?.strip_suffix(*q))
                .filter(|k| !k.contains(['\'', '"', '\\']));
            steps.push(match quoted {
                Some(key) => Step::Key(key),
                None => Step::Index(inner.parse().ok()?),
            });
            rest = &after[end + 1..];
        }
    }
    let Some(mut value) = context.get(name) else {
        return Some(format!("'{name}' is undefined"));
    };
    // `object_type_repr`: `None` for None, `<type> object` for the rest.
    let type_repr = |v: &Value| match v {
        Value::Null => "None".to_owned(),
        other => format!("{} object", crate::operators::type_name(other)),
    };
    for step in steps {
        let next = match (&step, value) {
            (Step::Key(key), Value::Object(map)) => map.get(*key),
            (Step::Index(i), Value::Array(items)) => usize::try_from(*i)
                .ok()
                .or_else(|| {
                    items
                        .len()
                        .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)
                })
                .and_then(|i| items.get(i)),
            _ => None,
        };
        match (next, step) {
            (Some(next), _) => value = next,
            (None, Step::Key(key)) => {
                return Some(format!("'{}' has no attribute '{key}'", type_repr(value)));
            }
            (None, Step::Index(i)) => {
                return Some(format!("{} has no element {i}", type_repr(value)));
            }
        }
    }
    None
}

/// StackStorm's `MATCH_CRITERIA` rewrite, `re.sub(r"({{)\s*(.*)\s*(}})", r"\1\2 | to_complex\3")`
/// (`st2common/constants/rules.py`): on each line, the text from the first `{{` to the last
/// `}}` gets `| to_complex`. `None` when the pattern has no `{{ ... }}`.
fn to_complex_rewrite(text: &str) -> Option<String> {
    static MATCH_CRITERIA: std::sync::LazyLock<Option<fancy_regex::Regex>> =
        std::sync::LazyLock::new(|| fancy_regex::Regex::new(r"(\{\{)\s*(.*)\s*(\}\})").ok());
    let re = MATCH_CRITERIA.as_ref()?;
    if !re.is_match(text).unwrap_or(false) {
        return None;
    }
    Some(
        re.replace_all(text, "${1}${2} | to_complex${3}")
            .into_owned(),
    )
}

impl Renderer {
    /// The top-level variable names a template uses (empty when it does not parse: rendering
    /// reports that error). Names the template binds itself (loop variables, `set`, macros)
    /// are not included; global functions such as `range` are (see [`Renderer::is_global`]).
    pub fn variables(&self, template: &str) -> Vec<String> {
        if sandbox::check_source(template).is_err() {
            return Vec::new();
        }
        self.env
            .template_from_str(template)
            .map(|t| t.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default()
    }

    /// Whether `template` has `{{`/`{%` but does not parse as a template (within the bounds):
    /// StackStorm then takes it as plain text (`param.py::_process`).
    pub fn is_malformed(&self, template: &str) -> bool {
        (template.contains("{{") || template.contains("{%")) && sandbox::is_malformed(template)
    }

    /// Whether `name` is one of the environment's global functions (`range`, `dict`,
    /// `namespace`): a template may use it without it being in the context.
    pub fn is_global(&self, name: &str) -> bool {
        self.env.globals().any(|(global, _)| global == name)
    }
}

/// The expression of a pattern that is exactly one `{{ ... }}`.
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_render_with_types_kept() {
        let r = Renderer::new();
        let ctx = json!({"trigger": {"body": {"n": 3, "tags": ["a", "b"], "name": "ada"}}, "st2kv": {"system": {"env": "prod"}}});
        assert_eq!(
            r.render(&json!("{{ trigger.body.n }}"), &ctx).unwrap(),
            json!(3)
        );
        assert_eq!(
            r.render(&json!("{{trigger.body.tags}}"), &ctx).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            r.render(&json!("{{ trigger.body.name }}"), &ctx).unwrap(),
            json!("ada")
        );
        assert_eq!(
            r.render(&json!("hello {{ trigger.body.name }}"), &ctx)
                .unwrap(),
            json!("hello ada")
        );
        assert_eq!(
            r.render(&json!("{{ st2kv.system.env }}"), &ctx).unwrap(),
            json!("prod")
        );
        assert_eq!(r.render(&json!(5), &ctx).unwrap(), json!(5));
        assert_eq!(r.render(&json!("plain"), &ctx).unwrap(), json!("plain"));
        assert!(
            r.render(&json!("{{ trigger.body.missing }}"), &ctx)
                .is_err(),
            "strict undefined"
        );
        // A missing step deeper in the path is named as Jinja2 names it.
        assert_eq!(
            r.render(&json!("{{ trigger.body.pusher.name }}"), &ctx)
                .unwrap_err(),
            "'dict object' has no attribute 'pusher'"
        );
        assert!(r.render(&json!("{{ nope }}"), &ctx).is_err());
        assert!(r.render(&json!("{{ unclosed"), &ctx).is_err());
    }

    #[test]
    fn decrypt_kv_uses_the_function_it_is_given() {
        let ctx = json!({"st2kv": {"system": {"token": "CIPHER", "empty": "", "n": 3}}});
        let r = Renderer::new().with_decrypt_kv(|c| match c {
            "CIPHER" => Ok("plain".into()),
            _ => Err("the signature does not match".into()),
        });
        assert_eq!(
            r.render(&json!("{{ st2kv.system.token | decrypt_kv }}"), &ctx)
                .unwrap(),
            json!("plain")
        );
        assert_eq!(
            r.render(&json!("Bearer {{ st2kv.system.token | decrypt_kv }}"), &ctx)
                .unwrap(),
            json!("Bearer plain")
        );
        // Without the filter, a secret renders as its ciphertext, as in StackStorm.
        assert_eq!(
            r.render(&json!("{{ st2kv.system.token }}"), &ctx).unwrap(),
            json!("CIPHER")
        );
        let err = r
            .render(&json!("{{ 'ABCD' | decrypt_kv }}"), &ctx)
            .unwrap_err();
        assert!(
            err.contains("decrypt_kv: the signature does not match"),
            "{err}"
        );
        // test_jinja_render_crypto_filters.py: a missing (or empty) datastore item is named.
        for key in ["empty", "doesnt_exist"] {
            let err = r
                .render(
                    &json!(format!("{{{{ st2kv.system.{key} | decrypt_kv }}}}")),
                    &ctx,
                )
                .unwrap_err();
            assert!(
                err.contains(&format!(
                    "Referenced datastore item \"st2kv.system.{key}\" doesn't exist or it contains an empty string"
                )),
                "{err}"
            );
        }
        let err = r
            .render(&json!("{{ st2kv.user.doesnt_exist | decrypt_kv }}"), &ctx)
            .unwrap_err();
        assert!(err.contains("\"st2kv.user.doesnt_exist\""), "{err}");
        let err = r.render(&json!("{{ '' | decrypt_kv }}"), &ctx).unwrap_err();
        assert!(err.contains("the value is empty"), "{err}");
        let err = r
            .render(&json!("{{ st2kv.system.n | decrypt_kv }}"), &ctx)
            .unwrap_err();
        assert!(err.contains("expected a secret's ciphertext"), "{err}");
        // A renderer without a key says so.
        let err = Renderer::new()
            .render(&json!("{{ st2kv.system.token | decrypt_kv }}"), &ctx)
            .unwrap_err();
        assert!(err.contains("no datastore key"), "{err}");
    }

    /// docs/st2-jinja-filters.md §0.2: StackStorm's `KeyValueLookup` never makes a key
    /// undefined (test_param_utils.py::test_get_value_from_datastore_through_render_live_params).
    #[test]
    fn missing_datastore_keys_render_empty() {
        let r = Renderer::new();
        let ctx = json!({"st2kv": {"system": {"k": "foo", "n": "42", "a.b": "nested", "j": "{\"a\": 1}"}}});
        let text = |t: &str| r.render_text(t, &ctx).unwrap();
        assert_eq!(text("{{ st2kv.system.k }}"), "foo");
        assert_eq!(text("{{ st2kv.system['k'] }}"), "foo");
        assert_eq!(text("[{{ st2kv.system.nope }}]"), "[]");
        assert_eq!(text("{{ st2kv.system.a.b }}"), "nested");
        assert_eq!(text("{{ st2kv.system.nope | default('dflt') }}"), "");
        assert_eq!(text("{{ st2kv.system.nope is defined }}"), "True");
        assert_eq!(text("{{ st2kv.system.n | int + 1 }}"), "43");
        assert_eq!(text("{{ st2kv.system.n | float }}"), "42.0");
        assert_eq!(text("{{ st2kv.system.nope | int }}"), "0");
        assert_eq!(text("{{ st2kv.system.k | upper }}"), "FOO");
        assert_eq!(text("{{ st2kv.system.j | from_json_string }}"), "{'a': 1}");
        assert_eq!(text("{{ st2kv.user.anything }}"), "");
        assert_eq!(
            r.render(&json!("{{ st2kv.system.nope }}"), &ctx).unwrap(),
            json!("")
        );
        assert_eq!(
            r.render(&json!("{{ st2kv.system.nope | int }}"), &ctx)
                .unwrap(),
            json!(0)
        );
        // Strict undefined still holds outside the datastore.
        assert!(r.render_text("{{ missing }}", &ctx).is_err());
    }

    /// docs/st2-jinja-filters.md §0 and §0.3: Python's `str()` of values, `%` formatting,
    /// `trim_blocks`/`lstrip_blocks`.
    #[test]
    fn python_semantics() {
        let r = Renderer::new();
        let ctx = json!({"a": "x", "n": 7, "f": 2.5, "b": true, "z": null, "l": ["a", 1], "d": {"k": 1.0}});
        let text = |t: &str| r.render_text(t, &ctx).unwrap();
        assert_eq!(
            text("{{ b }} {{ z }} {{ l }} {{ d }}"),
            "True None ['a', 1] {'k': 1.0}"
        );
        assert_eq!(text("{{ 'v' ~ b }}"), "vTrue");
        assert_eq!(text("{{ b | string }}"), "True");
        assert_eq!(text(r#"{{ "%s-%d" % (a, n) }}"#), "x-7");
        assert_eq!(
            text(r#"{{ "%.2f|%5s|%(k)s" % {"k": 1} if false else "%.2f" % f }}"#),
            "2.50"
        );
        assert_eq!(text(r#"{{ "%(a)s/%(n)03d" % {"a": a, "n": n} }}"#), "x/007");
        assert_eq!(text("{{ 7 % 3 }}"), "1");
        assert_eq!(
            text("a\n  {% if true %}\n  X\n  {% endif %}\nb"),
            "a\n  X\nb"
        );
        assert_eq!(
            r.render(&json!("{{ '%s' % a }}"), &ctx).unwrap(),
            json!("x")
        );
    }

    /// Jinja2's `StrictUndefined` messages, as StackStorm reports them
    /// (test_param_utils.py::test_get_finalized_params_non_existent_template_key_in_action_context,
    /// and the table of `docs/st2-jinja-filters.md` §0.1).
    #[test]
    fn undefined_paths_are_named_as_jinja2_names_them() {
        let r = Renderer::new();
        let ctx = json!({"d": {}, "s": "str", "l": [1], "n": null, "action_context": {"api_user": "noob"}});
        for (template, message) in [
            ("{{ missing }}", "'missing' is undefined"),
            (
                "{{ d.missing }}",
                "'dict object' has no attribute 'missing'",
            ),
            (
                "{{ d['missing'] }}",
                "'dict object' has no attribute 'missing'",
            ),
            ("{{ s.missing }}", "'str object' has no attribute 'missing'"),
            ("{{ missing.attr }}", "'missing' is undefined"),
            ("{{ l[3] }}", "list object has no element 3"),
            ("{{ n.x }}", "'None' has no attribute 'x'"),
            (
                "{{action_context.lorem_ipsum}}",
                "'dict object' has no attribute 'lorem_ipsum'",
            ),
            (
                "x {{ action_context.lorem_ipsum }}",
                "'dict object' has no attribute 'lorem_ipsum'",
            ),
        ] {
            assert_eq!(
                r.render(&json!(template), &ctx).unwrap_err(),
                message,
                "{template}"
            );
        }
    }

    /// test_executions.py::test_template_encrypted_and_bool: a filter's error is the whole
    /// message, as Python's exception gives it (`Failed to render parameter "encrypted_param":
    /// Referenced datastore item ...`), without minijinja's kind and location.
    #[test]
    fn filter_errors_are_their_bare_message() {
        let r = Renderer::new();
        let ctx = json!({"st2kv": {"system": {}}});
        let expected = "Referenced datastore item \"st2kv.system.secret\" doesn't exist or it contains an empty string";
        assert_eq!(
            r.render(&json!("{{ st2kv.system.secret | decrypt_kv }}"), &ctx)
                .unwrap_err(),
            expected
        );
        assert_eq!(
            r.render_text("x {{ st2kv.system.secret | decrypt_kv }}", &ctx)
                .unwrap_err(),
            expected
        );
        assert_eq!(
            r.render_text("{{ '%s %s' % (1,) }}", &ctx).unwrap_err(),
            "not enough arguments for format string"
        );
    }
}
