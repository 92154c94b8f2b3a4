//! Rules: decide whether a trigger instance matches.

use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;
use crate::bindings::{rule as wit, types};

/// A rule. Export it with [`export_rule!`](crate::export_rule).
///
/// It runs after the rule file's declarative criteria pass, under the rule deadline
/// (100 ms by default), so keep it cheap: the payload is parsed only when asked for.
pub trait Rule {
    /// Decides about one trigger instance.
    fn evaluate(instance: &TriggerInstance) -> Result<Decision, Error>;
}

/// A trigger instance as StackStorm records it: something happened.
///
/// The payload arrives as JSON text and is parsed on first use by
/// [`payload`](Self::payload) (cached) or [`payload_as`](Self::payload_as).
#[derive(Debug, Clone)]
pub struct TriggerInstance {
    /// The trigger instance id (24 hex digits, like StackStorm's object ids).
    pub id: String,
    /// The trigger reference, for example `core.st2.webhook`.
    pub trigger: String,
    /// When the event occurred, RFC 3339 in UTC, for example `2026-11-29T16:23:00.000000Z`.
    pub occurrence_time: String,
    payload: String,
    parsed: OnceLock<Value>,
}

impl TriggerInstance {
    /// Builds a trigger instance, for example in unit tests.
    pub fn new(
        id: impl Into<String>,
        trigger: impl Into<String>,
        payload_json: impl Into<String>,
        occurrence_time: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            trigger: trigger.into(),
            occurrence_time: occurrence_time.into(),
            payload: payload_json.into(),
            parsed: OnceLock::new(),
        }
    }

    /// The payload as the JSON text the host sent. For a webhook:
    /// `{"headers": {...}, "headers_lower": {...}, "body": ...}`.
    pub fn payload_json(&self) -> &str {
        &self.payload
    }

    /// The payload parsed as a JSON value (parsed once, then cached).
    ///
    /// Text that is not JSON is [`Error::InvalidInput`].
    pub fn payload(&self) -> Result<&Value, Error> {
        if let Some(value) = self.parsed.get() {
            return Ok(value);
        }
        let value = serde_json::from_str(&self.payload).map_err(payload_error)?;
        Ok(self.parsed.get_or_init(|| value))
    }

    /// The payload deserialized into `T` (parsed afresh each call).
    ///
    /// A payload that does not fit `T` is [`Error::InvalidInput`].
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        match self.parsed.get() {
            Some(value) => T::deserialize(value).map_err(payload_error),
            None => serde_json::from_str(&self.payload).map_err(payload_error),
        }
    }
}

fn payload_error(error: serde_json::Error) -> Error {
    Error::invalid_input(format!("invalid trigger payload: {error}"))
}

impl From<types::TriggerInstance> for TriggerInstance {
    fn from(instance: types::TriggerInstance) -> Self {
        Self::new(
            instance.id,
            instance.trigger,
            instance.payload,
            instance.occurrence_time,
        )
    }
}

/// What a rule decided about one trigger instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    matched: bool,
    values: Values,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Values {
    None,
    Object(String),
    /// `matched_with` got something that is not a JSON object; reported when exported.
    Invalid(String),
}

impl Decision {
    /// The rule matches; no extra values.
    pub fn matched() -> Self {
        Self {
            matched: true,
            values: Values::None,
        }
    }

    /// The rule does not match.
    pub fn no_match() -> Self {
        Self {
            matched: false,
            values: Values::None,
        }
    }

    /// The rule matches and hands `values` to the action-parameter templates, which see
    /// each key as `rule.<key>`.
    ///
    /// `values` must serialize to a JSON object (a struct, a map, `json!({...})`). If it
    /// does not, the evaluation fails with [`Error::Internal`] once the rule returns.
    pub fn matched_with(values: impl Serialize) -> Self {
        let values = match serde_json::to_string(&values) {
            Ok(text) if text.starts_with('{') => Values::Object(text),
            Ok(_) => Values::Invalid("rule values must serialize to a JSON object".to_owned()),
            Err(error) => Values::Invalid(format!("rule values do not serialize: {error}")),
        };
        Self {
            matched: true,
            values,
        }
    }

    /// Whether the rule matches.
    pub fn is_match(&self) -> bool {
        self.matched
    }

    /// The extra values as JSON object text, if any (and if they serialized).
    pub fn values_json(&self) -> Option<&str> {
        match &self.values {
            Values::Object(text) => Some(text),
            Values::None | Values::Invalid(_) => None,
        }
    }

    fn into_wit(self) -> Result<types::Decision, Error> {
        let values = match self.values {
            Values::None => None,
            Values::Object(text) => Some(text),
            Values::Invalid(message) => return Err(Error::internal(message)),
        };
        Ok(types::Decision {
            matched: self.matched,
            values,
        })
    }
}

/// Entry points used by the export macros, re-exported as `crate::__private`.
pub(crate) mod __private {
    use super::*;

    /// `evaluate` for a [`Rule`].
    pub fn evaluate_rule<R: Rule>(
        instance: wit::TriggerInstance,
    ) -> Result<wit::Decision, wit::Error> {
        let instance = TriggerInstance::from(instance);
        Ok(R::evaluate(&instance)?.into_wit()?)
    }
}

/// Exports a type implementing [`Rule`] as the component's `evaluate` function.
///
/// Use it once, at the top level of a plugin crate (a `cdylib` built for `wasm32-wasip2`).
///
/// ```ignore
/// struct Always;
/// impl stormhook_sdk::Rule for Always { /* ... */ }
/// stormhook_sdk::export_rule!(Always);
/// ```
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        const _: () = {
            $crate::__require_wasm!();

            struct StormhookRule;

            impl $crate::bindings::rule::Guest for StormhookRule {
                fn evaluate(
                    instance: $crate::bindings::rule::TriggerInstance,
                ) -> ::core::result::Result<
                    $crate::bindings::rule::Decision,
                    $crate::bindings::rule::Error,
                > {
                    $crate::__private::evaluate_rule::<$rule>(instance)
                }
            }

    $crate::bindings::rule::export!(StormhookRule with_types_in $crate::bindings::rule);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert!(Decision::matched().is_match());
        assert!(!Decision::no_match().is_match());
        let decision = Decision::matched_with(serde_json::json!({"branch": "main"}));
        assert_eq!(decision.values_json(), Some(r#"{"branch":"main"}"#));
        let wit = decision.into_wit().unwrap();
        assert!(wit.matched);
    }

    #[test]
    fn values_must_be_an_object() {
        let error = Decision::matched_with([1, 2]).into_wit().unwrap_err();
        assert!(matches!(error, Error::Internal(_)));
    }

    #[test]
    fn payload_is_parsed_lazily() {
        let instance = TriggerInstance::new("id", "t", r#"{"body":{"ref":"x"}}"#, "now");
        assert_eq!(instance.payload().unwrap()["body"]["ref"], "x");
        #[derive(serde::Deserialize)]
        struct P {
            body: serde_json::Value,
        }
        assert_eq!(instance.payload_as::<P>().unwrap().body["ref"], "x");

        let broken = TriggerInstance::new("id", "t", "{", "now");
        assert!(matches!(broken.payload(), Err(Error::InvalidInput(_))));
    }
}
