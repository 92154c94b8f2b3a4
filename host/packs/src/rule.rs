//! Rule files: `<pack>/rules/<name>.yaml`, StackStorm's rule schema plus an optional `wasm` key
//! that names a rule component.
//!
//! ```yaml
//! name: push_to_main
//! pack: examples
//! description: Greets whoever pushed to main.
//! enabled: true
//! trigger:
//!   type: core.st2.webhook
//!   parameters: {url: github}
//! criteria:                    # declarative criteria run first (StackStorm operators)
//!   trigger.body.repository.name: {type: equals, pattern: stormhook}
//! wasm:                        # then the rule component decides
//!   entry_point: branch_filter.wasm   # a component next to this file
//!   timeout_ms: 100            # optional, default 100
//!   memory_mb: 32              # optional, default 32
//! action:
//!   ref: examples.greet
//!   parameters: {name: "{{ rule.pusher }}"}
//! ```
//!
//! The component's reference is the rule's (`<pack>.<name>`); its values are available to the
//! action parameters as `rule.<key>`.

use serde::Deserialize;

use crate::action::{DatastoreGrant, LimitsDoc};
use crate::error::DocError;

/// One rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RuleDoc {
    /// The rule name; the reference is `<pack>.<name>`.
    pub name: String,
    /// The pack; filled from the pack folder when absent.
    #[serde(default)]
    pub pack: String,
    /// A description.
    #[serde(default)]
    pub description: String,
    /// Whether the rule is enforced. Rule files default to enabled, as StackStorm's packs do.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The trigger the rule listens to.
    pub trigger: TriggerRef,
    /// Declarative criteria: jsonpath key to `{type, pattern}`.
    #[serde(default)]
    pub criteria: serde_json::Map<String, serde_json::Value>,
    /// The action to run when the rule matches.
    pub action: ActionRef,
    /// `standard` (default) or `backstop`.
    #[serde(default, rename = "type")]
    pub rule_type: Option<serde_json::Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<serde_json::Value>,
    /// The rule component, if the rule has one.
    #[serde(default)]
    pub wasm: Option<WasmRule>,
}

/// The `trigger` of a rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TriggerRef {
    /// The trigger type reference, for example `core.st2.webhook`.
    #[serde(rename = "type")]
    pub trigger_type: String,
    /// Trigger parameters (for a webhook: `url`).
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// The `action` of a rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActionRef {
    /// The action reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Parameter templates.
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
}

/// The `wasm` key: a rule component and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmRule {
    /// The component file, next to the rule file.
    pub entry_point: String,
    /// Deadline in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Memory cap in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Datastore access (default: none).
    #[serde(default)]
    pub datastore: Option<DatastoreGrant>,
}

impl WasmRule {
    /// The limits as a [`LimitsDoc`].
    pub fn limits(&self) -> Option<LimitsDoc> {
        (self.timeout_ms.is_some() || self.memory_mb.is_some()).then_some(LimitsDoc {
            timeout_ms: self.timeout_ms,
            memory_mb: self.memory_mb,
        })
    }
}

fn yes() -> bool {
    true
}

impl RuleDoc {
    /// Parses and validates a rule file found in the folder of pack `pack`.
    ///
    /// # Errors
    ///
    /// [`DocError`] with line and column.
    pub fn parse(path: &str, text: &str, pack: &str) -> Result<Self, DocError> {
        let rule: Self = yaml_serde::from_str(text).map_err(|e| DocError::from_yaml(path, &e))?;
        rule.validate(path, text, pack)
    }

    /// Validates a rule that arrived as JSON (the rules API): the same checks as a file, with
    /// `source` naming it in messages. The pack is the document's own, or `default`.
    ///
    /// # Errors
    ///
    /// [`DocError`] without a position.
    pub fn from_json(source: &str, value: serde_json::Value) -> Result<Self, DocError> {
        let rule: Self = serde_json::from_value(value).map_err(|e| DocError {
            path: source.to_owned(),
            line: None,
            column: None,
            message: e.to_string(),
        })?;
        let pack = if rule.pack.is_empty() {
            "default".to_owned()
        } else {
            rule.pack.clone()
        };
        rule.validate(source, "", &pack)
    }

    fn validate(self, path: &str, text: &str, pack: &str) -> Result<Self, DocError> {
        let mut rule = self;
        if !crate::is_valid_name(&rule.name) {
            return Err(DocError::at_key(
                path,
                text,
                "name",
                format!(
                    "invalid rule name {:?}: a name is not empty and has no control characters",
                    rule.name
                ),
            ));
        }
        if rule.pack.is_empty() {
            rule.pack = pack.to_owned();
        } else if rule.pack != pack {
            return Err(DocError::at_key(
                path,
                text,
                "pack",
                format!(
                    "pack {:?} does not match the pack folder {pack:?}",
                    rule.pack
                ),
            ));
        }
        if rule.trigger.trigger_type == "core.st2.webhook" {
            // StackStorm validates system trigger parameters: `{url: string}`, nothing else.
            let params = &rule.trigger.parameters;
            let url_ok = params
                .get("url")
                .is_some_and(|u| u.as_str().is_some_and(|u| !u.trim_matches('/').is_empty()));
            if !url_ok {
                return Err(DocError::at_key(
                    path,
                    text,
                    "trigger",
                    "trigger `core.st2.webhook` needs parameters.url, a non-empty string",
                ));
            }
            // StackStorm's `url`, and Stormhook's sender policy (how the sender is verified,
            // replay protection, handshakes: `stormhook_senders::policy`).
            let known = |k: &str| k == "url" || stormhook_senders::policy::POLICY_KEYS.contains(&k);
            if let Some(extra) = params.keys().find(|k| !known(k)) {
                return Err(DocError::at_key(
                    path,
                    text,
                    "trigger",
                    format!(
                        "Additional properties are not allowed ('{extra}' was unexpected) in the parameters of trigger `core.st2.webhook` (Stormhook adds {})",
                        stormhook_senders::policy::POLICY_KEYS.join(", ")
                    ),
                ));
            }
            if let Err(message) = stormhook_senders::HookPolicy::parse(params) {
                return Err(DocError::at_key(
                    path,
                    text,
                    "trigger",
                    format!("in the parameters of trigger `core.st2.webhook`: {message}"),
                ));
            }
        }
        if let Some(wasm) = &rule.wasm {
            if !crate::is_plain_wasm_file(&wasm.entry_point) {
                return Err(DocError::at_key(
                    path,
                    text,
                    "wasm.entry_point",
                    format!(
                        "entry_point {:?} must be a `.wasm` file name next to this file",
                        wasm.entry_point
                    ),
                ));
            }
            if wasm.timeout_ms == Some(0) || wasm.memory_mb == Some(0) {
                return Err(DocError::at_key(
                    path,
                    text,
                    "wasm",
                    "limits must be positive",
                ));
            }
        }
        Ok(rule)
    }

    /// Parses a rule file outside a pack folder (the rule tester): the pack is the file's own
    /// `pack`, or `default` as in StackStorm.
    ///
    /// # Errors
    ///
    /// [`DocError`] with line and column.
    pub fn parse_standalone(path: &str, text: &str) -> Result<Self, DocError> {
        #[derive(Deserialize)]
        struct PackOnly {
            #[serde(default)]
            pack: Option<String>,
        }
        let pack = yaml_serde::from_str::<PackOnly>(text)
            .ok()
            .and_then(|p| p.pack)
            .unwrap_or_else(|| "default".to_owned());
        Self::parse(path, text, &pack)
    }

    /// `<pack>.<name>`.
    pub fn reference(&self) -> String {
        format!("{}.{}", self.pack, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "name: r\ntrigger:\n  type: core.st2.webhook\n  parameters: {url: github}\naction:\n  ref: examples.greet\nwasm:\n  entry_point: branch_filter.wasm\n";

    #[test]
    fn parses_a_rule_with_a_component() {
        let rule = RuleDoc::parse("r.yaml", RULE, "examples").unwrap();
        assert_eq!(rule.reference(), "examples.r");
        assert_eq!(rule.wasm.unwrap().entry_point, "branch_filter.wasm");
        assert!(rule.enabled);
    }

    #[test]
    fn rejects_unknown_wasm_keys() {
        let text = RULE.replace("entry_point", "entrypoint");
        let err = RuleDoc::parse("r.yaml", &text, "examples").unwrap_err();
        assert!(err.message.contains("unknown field `entrypoint`"), "{err}");
        assert_eq!(err.line, Some(8), "{err}");
    }

    #[test]
    fn webhook_triggers_need_exactly_a_url() {
        let text = "name: r\ntrigger:\n  type: core.st2.webhook\n  parameters: {path: x}\naction: {ref: a.b}\n";
        let err = RuleDoc::parse("r.yaml", text, "p").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("parameters.url"), "{err}");
        let text = "name: r\ntrigger:\n  type: core.st2.webhook\n  parameters: {url: x, y: 1}\naction: {ref: a.b}\n";
        assert!(
            RuleDoc::parse("r.yaml", text, "p")
                .unwrap_err()
                .message
                .contains("'y' was unexpected")
        );
    }

    #[test]
    fn webhook_triggers_take_a_sender_policy_which_is_checked() {
        let ok = "name: r\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: gh\n    verify: {preset: github, secret: {datastore: gh_secret}}\naction: {ref: a.b}\n";
        let rule = RuleDoc::parse("r.yaml", ok, "p").unwrap();
        assert!(rule.trigger.parameters.contains_key("verify"));
        let literal = ok.replace("{datastore: gh_secret}", "hunter2");
        let err = RuleDoc::parse("r.yaml", &literal, "p").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("datastore"), "{err}");
        assert!(!err.message.contains("hunter2"), "{err}");
    }

    #[test]
    fn rejects_a_foreign_pack() {
        let err =
            RuleDoc::parse("r.yaml", &format!("pack: other\n{RULE}"), "examples").unwrap_err();
        assert_eq!(
            err.to_string(),
            "r.yaml:1:1: pack \"other\" does not match the pack folder \"examples\""
        );
    }
}
