//! What the server provides to plugins beyond the datastore: pack configuration (the `config`
//! import) and starting more work (the `events` import).
//!
//! The runtime is created before the parts of the server that implement these, so they are
//! attached afterwards with [`crate::Runtime::attach`]. Until then `config` answers `{}` and
//! `events` is refused as unavailable.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future returned by [`Events`] methods.
pub type EventsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EventsError>> + Send + 'a>>;

/// Why an `emit` or `request-execution` was refused.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The request itself is wrong (unknown action, parameters not an object, ...).
    /// Plugins see `invalid-input`.
    #[error("{0}")]
    Invalid(String),
    /// Refused by policy (for example the chain depth limit). Plugins see `denied`.
    #[error("{0}")]
    Denied(String),
    /// The store could not take it. Plugins see `upstream`.
    #[error("{0}")]
    Failed(String),
}

/// Where a plugin call that starts more work comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The plugin reference, `<pack>.<name>`.
    pub plugin: String,
    /// The execution the call runs for (actions).
    pub execution_id: Option<String>,
    /// The user the execution runs as.
    pub user: Option<String>,
    /// The trace tag of the execution's trace.
    pub trace_tag: Option<String>,
    /// Plugin-started links leading to the calling execution (0 for one a webhook, a rule or
    /// the API started). Work this call starts has depth `depth + 1`.
    pub depth: u32,
}

/// Dispatching trigger instances and requesting executions on behalf of a plugin.
pub trait Events: Send + Sync + 'static {
    /// Stores a trigger instance of `trigger` with `payload` (JSON text of an object) durably
    /// and returns its id. Rules evaluate it like any other.
    fn emit<'a>(
        &'a self,
        origin: &'a Origin,
        trigger: &'a str,
        payload: &'a str,
    ) -> EventsFuture<'a, String>;

    /// Requests an execution of `action` with `parameters` (JSON text of an object), whose
    /// context names `origin.execution_id` as its parent, and returns its id.
    fn request_execution<'a>(
        &'a self,
        origin: &'a Origin,
        action: &'a str,
        parameters: &'a str,
    ) -> EventsFuture<'a, String>;
}

/// One pack's configuration as components see it.
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    /// The validated values, secrets in clear.
    pub values: Arc<serde_json::Map<String, serde_json::Value>>,
    /// The secret values, so the host can mask them in everything it records of a call.
    pub secrets: Arc<[String]>,
}

/// Pack configurations by pack name.
pub trait PackConfigs: Send + Sync + 'static {
    /// The configuration of `pack`, if it has one.
    fn config(&self, pack: &str) -> Option<PluginConfig>;
}

/// The text every secret value is replaced with.
pub const MASK: &str = "********";

/// Secrets shorter than this are not masked: replacing every `a` or `42` in a log would destroy
/// it and hide nothing.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces every known secret in text the host records of a call.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for `secrets` (short ones are ignored, see [`MIN_SECRET_LEN`]).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut redactor = Self::default();
        for secret in secrets {
            redactor.add(secret);
        }
        redactor
    }

    /// Adds one secret (for example a datastore secret the plugin just read).
    pub fn add(&mut self, secret: String) {
        if secret.len() >= MIN_SECRET_LEN && !self.secrets.contains(&secret) {
            self.secrets.push(secret);
            // Longest first, so a secret that contains another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    /// Masks secrets inside every string (and object key) of a JSON value, in place.
    pub fn value(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                if self.secrets.iter().any(|secret| s.contains(secret.as_str())) {
                    *s = self.text(s);
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            serde_json::Value::Object(map) => {
                let masked_keys = map
                    .keys()
                    .any(|k| self.secrets.iter().any(|secret| k.contains(secret.as_str())));
                if masked_keys {
                    let old = std::mem::take(map);
                    for (k, v) in old {
                        map.insert(self.text(&k), v);
                    }
                }
                map.values_mut().for_each(|v| self.value(v));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first_and_ignores_short_secrets() {
        let r = Redactor::new(["T000/B000/XXXX".to_owned(), "XXXX".into(), "ab".into()]);
        assert_eq!(
            r.text("https://hooks.example/services/T000/B000/XXXX and XXXX, ab"),
            "https://hooks.example/services/******** and ********, ab"
        );
        let mut v = serde_json::json!({"url": "x/T000/B000/XXXX", "list": ["XXXX"], "XXXX": 1});
        r.value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"url": "x/********", "list": ["********"], "********": 1})
        );
    }
}
