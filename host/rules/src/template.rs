//! Jinja rendering of criteria patterns (minijinja: sandboxed by design, unlike the Jinja2 that
//! gave StackStorm a remote-code-execution CVE).
//!
//! - Undefined variables are errors (StackStorm renders with `StrictUndefined`).
//! - A pattern that is a single `{{ expression }}` keeps the expression's type: it is rendered
//!   as JSON and decoded, so lists, objects and numbers survive. If decoding fails, the plain
//!   rendering is used. This is StackStorm's `to_complex` rewrite.
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

use crate::sandbox;
pub use crate::sandbox::{
    FUEL, MAX_ELIF_BRANCHES, MAX_EXPRESSION_OPERATORS, MAX_OUTPUT_BYTES, MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
};

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
        let ctx = minijinja::Value::from(minijinja::value::Serde(context));
        if let Some(expr) = single_expression(text) {
            let value =
                sandbox::eval(&self.env, expr, ctx.clone()).map_err(|e| match e.kind() {
                    // Strict mode stops at the first missing step; name the whole expression.
                    ErrorKind::UndefinedError => format!("undefined value: {expr}"),
                    _ => sandbox::describe(&e),
                })?;
            if value.is_undefined() {
                return Err(format!("undefined value: {expr}"));
            }
            if let Ok(value) = serde_json::to_value(&value) {
                return Ok(value);
            }
        }
        sandbox::render(&self.env, text, ctx)
            .map(Value::String)
            .map_err(|e| sandbox::describe(&e))
    }
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
        // A missing step deeper in the path names the whole expression.
        assert_eq!(
            r.render(&json!("{{ trigger.body.pusher.name }}"), &ctx)
                .unwrap_err(),
            "undefined value: trigger.body.pusher.name"
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
        let err = r
            .render(&json!("{{ st2kv.system.empty | decrypt_kv }}"), &ctx)
            .unwrap_err();
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
}
