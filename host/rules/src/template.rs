//! Jinja rendering of criteria patterns (minijinja: sandboxed by design, unlike the Jinja2 that
//! gave StackStorm a remote-code-execution CVE).
//!
//! - Undefined variables are errors (StackStorm renders with `StrictUndefined`).
//! - A pattern that is a single `{{ expression }}` keeps the expression's type: it is rendered
//!   as JSON and decoded, so lists, objects and numbers survive. If decoding fails, the plain
//!   rendering is used. This is StackStorm's `to_complex` rewrite.
//! - Non-string patterns are used as they are.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

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
    /// A renderer with strict undefined behaviour.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        Self { env }
    }

    /// Renders `pattern` with `context` (an object: `trigger`, `st2kv`, ...).
    ///
    /// # Errors
    ///
    /// The template does not parse or refers to something undefined; the message is
    /// minijinja's.
    pub fn render(&self, pattern: &Value, context: &Value) -> Result<Value, String> {
        let Value::String(text) = pattern else {
            return Ok(pattern.clone());
        };
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(pattern.clone());
        }
        let ctx = minijinja::Value::from(minijinja::value::Serde(context));
        if let Some(expr) = single_expression(text) {
            let compiled = self
                .env
                .compile_expression(expr)
                .map_err(|e| e.to_string())?;
            let value = compiled.eval(&ctx).map_err(|e| match e.kind() {
                // Strict mode stops at the first missing step; name the whole expression.
                minijinja::ErrorKind::UndefinedError => format!("undefined value: {expr}"),
                _ => e.to_string(),
            })?;
            if value.is_undefined() {
                return Err(format!("undefined value: {expr}"));
            }
            if let Ok(value) = serde_json::to_value(&value) {
                return Ok(value);
            }
        }
        self.env
            .render_str(text, &ctx)
            .map(Value::String)
            .map_err(|e| e.to_string())
    }
}

impl Renderer {
    /// The top-level variable names a template uses (empty when it does not parse: rendering
    /// reports that error).
    pub fn variables(&self, template: &str) -> Vec<String> {
        self.env
            .template_from_str(template)
            .map(|t| t.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default()
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
}
