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
///
/// A handle: clones share the list, so a secret learned during the call (a datastore secret
/// the plugin reads) is masked from then on everywhere, the outbound HTTP records included.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<std::sync::RwLock<Vec<String>>>,
}

impl Redactor {
    /// A redactor for `secrets` (short ones are ignored, see [`MIN_SECRET_LEN`]).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let redactor = Self::default();
        for secret in secrets {
            redactor.add(secret);
        }
        redactor
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<String>> {
        self.secrets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds one secret (for example a datastore secret the plugin just read).
    pub fn add(&self, secret: String) {
        if secret.len() < MIN_SECRET_LEN || self.read().contains(&secret) {
            return;
        }
        let mut secrets = self
            .secrets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !secrets.contains(&secret) {
            secrets.push(secret);
            // Longest first, so a secret that contains another is masked whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn text(&self, text: &str) -> String {
        mask(&self.read(), text)
    }

    /// Masks secrets inside every string (and object key) of a JSON value, in place.
    pub fn value(&self, value: &mut serde_json::Value) {
        let secrets = self.read();
        if !secrets.is_empty() {
            mask_value(&secrets, value);
        }
    }
}

fn mask(secrets: &[String], text: &str) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

fn mask_value(secrets: &[String], value: &mut serde_json::Value) {
    let contains = |s: &str| secrets.iter().any(|secret| s.contains(secret.as_str()));
    match value {
        serde_json::Value::String(s) if contains(s) => *s = mask(secrets, s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask_value(secrets, v)),
        serde_json::Value::Object(map) => {
            if map.keys().any(|k| contains(k)) {
                let old = std::mem::take(map);
                for (k, v) in old {
                    map.insert(mask(secrets, &k), v);
                }
            }
            map.values_mut().for_each(|v| mask_value(secrets, v));
        }
        _ => {}
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
