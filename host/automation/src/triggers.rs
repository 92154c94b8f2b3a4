//! Triggers that rules register: the webhook registry, and the system trigger types.
//!
//! A webhook exists because a rule's trigger is `core.st2.webhook` with `parameters.url`. As in
//! StackStorm, the url is registered without its leading and trailing slashes (inner slashes
//! stay). Rules with identical trigger parameters share one trigger, and several triggers may
//! share one url. A POST then creates one trigger instance per trigger. Disabling a rule does not
//! unregister its webhook.
//!
//! Trigger ids and names are derived from the trigger's type and parameters, so they are stable
//! across restarts: a stored trigger instance's `core.<uuid>` ref keeps pointing at the same
//! trigger.
//!
//! The triggers that exist (`GET /triggers`, [`existing_triggers`]) are, as in StackStorm
//! (`st2common/st2common/services/triggers.py`): the shadow trigger of every trigger type
//! without parameters (named as the type; the trigger its rules use), the triggers created
//! through `POST /triggers` (stored), and the trigger of every distinct type and parameters a
//! rule uses, unless a stored trigger has the same type and parameters (the rule then uses that
//! one). A rule-made trigger exists while a rule uses it; a stored one is deleted when the last
//! rule that used it goes ([`unused_stored_trigger`]).

use std::collections::HashMap;
use std::sync::Arc;

use md5::Md5;
use sha2::{Digest, Sha256};
use stormhook_packs::RuleDoc;
use stormhook_senders::HookPolicy;
use stormhook_storage::{StoredTrigger, TriggerType};

/// The trigger type of webhooks that rules register.
pub const WEBHOOK_TYPE: &str = "core.st2.webhook";

/// One trigger: a trigger type with parameters (StackStorm's `TriggerAPI`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Trigger {
    /// Object id (derived from type and parameters).
    pub id: String,
    /// A uuid (derived from type and parameters).
    pub name: String,
    /// `core`: the pack of the trigger type.
    pub pack: String,
    /// `core.<name>`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `trigger:core:<name>:<md5 of the parameters as Python's json.dumps(sort_keys=True)>`.
    pub uid: String,
    /// The trigger type ref.
    #[serde(rename = "type")]
    pub trigger_type: String,
    /// The trigger parameters.
    pub parameters: serde_json::Value,
}

impl Trigger {
    /// The trigger of `trigger_type` with `parameters` (id and name derived from both).
    pub fn new(trigger_type: &str, parameters: &serde_json::Value) -> Self {
        let canonical = python_json(parameters);
        let digest = Sha256::digest(format!("{trigger_type}\n{canonical}").as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        let name = uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string();
        let id = hex::encode(&digest[16..28]);
        let pack = trigger_type.split('.').next().unwrap_or("core").to_owned();
        Self {
            id,
            reference: format!("{pack}.{name}"),
            uid: format!(
                "trigger:{pack}:{name}:{}",
                hex::encode(Md5::digest(canonical.as_bytes()))
            ),
            name,
            pack,
            trigger_type: trigger_type.to_owned(),
            parameters: parameters.clone(),
        }
    }
}

impl Trigger {
    /// The trigger a rule on `trigger_type` with `parameters` uses: without parameters, the
    /// type's shadow trigger (as in StackStorm, whose rules on such a type share it); with
    /// parameters, the trigger the two make.
    pub fn for_rule(
        trigger_type: &str,
        parameters: &serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        if parameters.is_empty() {
            Self::shadow(trigger_type)
        } else {
            Self::new(trigger_type, &serde_json::Value::Object(parameters.clone()))
        }
    }

    /// The shadow trigger of the trigger type `reference`: its pack, name and ref are the
    /// type's (the pack is the part of the ref before the first dot), its parameters `{}`.
    pub fn shadow(reference: &str) -> Self {
        let (pack, name) = reference.split_once('.').unwrap_or(("", reference));
        let id = hex::encode(&Sha256::digest(format!("shadow\n{reference}").as_bytes())[..12]);
        Self {
            id,
            name: name.to_owned(),
            pack: pack.to_owned(),
            reference: reference.to_owned(),
            uid: format!("trigger:{pack}:{name}:{}", hex::encode(Md5::digest(b"{}"))),
            trigger_type: reference.to_owned(),
            parameters: serde_json::json!({}),
        }
    }

    /// A trigger created through the API, as it is stored.
    pub fn stored(t: &StoredTrigger) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            pack: t.pack.clone(),
            reference: t.reference.clone(),
            uid: format!(
                "trigger:{}:{}:{}",
                t.pack,
                t.name,
                hex::encode(Md5::digest(python_json(&t.parameters).as_bytes()))
            ),
            trigger_type: t.trigger_type.clone(),
            parameters: t.parameters.clone(),
        }
    }

    /// Whether `other` has this trigger's type and parameters.
    fn same_as(&self, trigger_type: &str, parameters: &serde_json::Value) -> bool {
        self.trigger_type == trigger_type && self.parameters == *parameters
    }
}

/// Where a trigger that exists comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerOrigin {
    /// The shadow trigger of a trigger type without parameters.
    Shadow,
    /// Created through `POST /triggers`, and stored.
    Stored,
    /// Made by the rules that use its type and parameters.
    Rules,
}

/// One trigger that exists.
#[derive(Debug, Clone)]
pub struct ExistingTrigger {
    /// The trigger.
    pub trigger: Trigger,
    /// A stored trigger's description.
    pub description: Option<String>,
    /// How many rules use it (StackStorm's `ref_count`, which its API does not show; a stored
    /// trigger goes when its last rule goes).
    pub ref_count: usize,
    /// Where it comes from.
    pub origin: TriggerOrigin,
}

/// The triggers that exist: shadow triggers (by type ref), then stored ones (by ref), then those
/// rules make (in rule order), each once.
pub fn existing_triggers<'a>(
    types: &[TriggerType],
    stored: &[StoredTrigger],
    rules: impl IntoIterator<Item = &'a RuleDoc>,
) -> Vec<ExistingTrigger> {
    let mut out: Vec<ExistingTrigger> = types
        .iter()
        .filter(|t| t.parameters_schema.as_object().is_none_or(|s| s.is_empty()))
        .map(|t| ExistingTrigger {
            trigger: Trigger::shadow(&t.reference),
            description: None,
            ref_count: 0,
            origin: TriggerOrigin::Shadow,
        })
        .collect();
    out.extend(stored.iter().map(|t| ExistingTrigger {
        trigger: Trigger::stored(t),
        description: t.description.clone(),
        ref_count: 0,
        origin: TriggerOrigin::Stored,
    }));
    for rule in rules {
        let parameters = serde_json::Value::Object(rule.trigger.parameters.clone());
        let trigger_type = rule.trigger.trigger_type.as_str();
        let used = if rule.trigger.parameters.is_empty() {
            // Rules on a type without parameters use its shadow trigger.
            out.iter_mut()
                .find(|e| e.origin == TriggerOrigin::Shadow && e.trigger.reference == trigger_type)
        } else {
            out.iter_mut().find(|e| {
                e.origin != TriggerOrigin::Shadow && e.trigger.same_as(trigger_type, &parameters)
            })
        };
        match used {
            Some(existing) => existing.ref_count += 1,
            None if rule.trigger.parameters.is_empty() => {}
            None => out.push(ExistingTrigger {
                trigger: Trigger::new(trigger_type, &parameters),
                description: None,
                ref_count: 1,
                origin: TriggerOrigin::Rules,
            }),
        }
    }
    out
}

/// The stored trigger of `trigger_type` with `parameters`, which a rule on them uses (as
/// [`existing_triggers`] counts it); none for a rule without parameters (it uses the shadow
/// trigger).
pub fn stored_trigger_for<'a>(
    trigger_type: &str,
    parameters: &serde_json::Map<String, serde_json::Value>,
    stored: &'a [StoredTrigger],
) -> Option<&'a StoredTrigger> {
    if parameters.is_empty() {
        return None;
    }
    let parameters = serde_json::Value::Object(parameters.clone());
    stored
        .iter()
        .find(|t| t.trigger_type == trigger_type && t.parameters == parameters)
}

/// The stored trigger a rule on `trigger_type` with `parameters` used, when no rule in `rules`
/// uses it any more: StackStorm deletes a trigger when the last rule that used it goes
/// (`cleanup_trigger_db_for_rule`). Shadow triggers, and rules without parameters, are left
/// alone, as there.
pub fn unused_stored_trigger<'a>(
    trigger_type: &str,
    parameters: &serde_json::Map<String, serde_json::Value>,
    stored: &[StoredTrigger],
    rules: impl IntoIterator<Item = &'a RuleDoc>,
) -> Option<String> {
    let found = stored_trigger_for(trigger_type, parameters, stored)?;
    let parameters = &found.parameters;
    let still_used = rules.into_iter().any(|r| {
        r.trigger.trigger_type == trigger_type
            && serde_json::Value::Object(r.trigger.parameters.clone()) == *parameters
    });
    (!still_used).then(|| found.id.clone())
}

/// The registered webhooks, in registration order.
#[derive(Debug, Default)]
pub struct Webhooks {
    hooks: Vec<Hook>,
    index: HashMap<String, usize>,
    conflicts: Vec<String>,
}

/// One webhook url: its triggers and how its senders are verified.
#[derive(Debug)]
pub struct Hook {
    /// The url (normalised).
    pub url: String,
    /// Its triggers, one instance each per delivery.
    pub triggers: Vec<Arc<Trigger>>,
    /// The sender policy (`verify`, `replay`, `handshake`), shared by every rule on the url.
    pub policy: Option<Arc<HookPolicy>>,
    /// The pack of the rule that first registered the url: `{config: key}` secrets are read
    /// from its config.
    pub pack: String,
    /// That rule's ref, for messages.
    pub rule: String,
    /// Whether that rule is enabled (an enabled rule's policy holds the url).
    pub enabled: bool,
}

impl Webhooks {
    /// The webhooks registered by `rules` (enabled or not). Every rule on one url must declare
    /// the same sender policy (none, or the same `verify`/`replay`/`handshake`/...): the url's
    /// policy is its first enabled rule's (its first rule's, when none is enabled), and a rule
    /// whose policy differs is not registered. For an enabled rule, [`Webhooks::conflicts`]
    /// says why (a hook verified for one rule and open for another would let unverified
    /// deliveries reach the first rule's actions); a disabled one is left out quietly (it runs
    /// nothing, and disabling a rule is how one makes way for another on its url).
    pub fn from_rules<'a>(
        rules: impl IntoIterator<Item = (&'a RuleDoc, &'a Arc<Trigger>)>,
    ) -> Self {
        let mut hooks = Self::default();
        let mut parsed = Vec::new();
        for (rule, trigger) in rules {
            if rule.trigger.trigger_type != WEBHOOK_TYPE {
                continue;
            }
            let Some(url) = rule.trigger.parameters.get("url").and_then(|u| u.as_str()) else {
                continue;
            };
            let reference = format!("{}.{}", rule.pack, rule.name);
            match HookPolicy::parse(&rule.trigger.parameters) {
                Ok(policy) => parsed.push((
                    rule,
                    trigger,
                    normalize_url(url).to_owned(),
                    reference,
                    policy.map(Arc::new),
                )),
                // Rule files and the API refuse such a rule before it gets here.
                Err(message) => hooks.conflicts.push(format!(
                    "rule {reference}: webhook {url}: {message}; not registered"
                )),
            }
        }
        // Who decides each url's policy: its first enabled rule, else its first rule.
        let mut owners: HashMap<&str, usize> = HashMap::new();
        for (n, (rule, _, url, ..)) in parsed.iter().enumerate() {
            match owners.get(url.as_str()) {
                None => {
                    owners.insert(url, n);
                }
                Some(&owner) if !parsed[owner].0.enabled && rule.enabled => {
                    owners.insert(url, n);
                }
                Some(_) => {}
            }
        }
        for (rule, trigger, url, reference, policy) in &parsed {
            let slot = match hooks.index.get(url) {
                Some(&slot) => slot,
                None => {
                    let (owner, _, _, owner_ref, owner_policy) = &parsed[owners[url.as_str()]];
                    hooks.hooks.push(Hook {
                        url: url.clone(),
                        triggers: Vec::new(),
                        policy: owner_policy.clone(),
                        pack: owner.pack.clone(),
                        rule: owner_ref.clone(),
                        enabled: owner.enabled,
                    });
                    hooks.index.insert(url.clone(), hooks.hooks.len() - 1);
                    hooks.hooks.len() - 1
                }
            };
            let hook = &mut hooks.hooks[slot];
            if hook.policy != *policy {
                if rule.enabled {
                    hooks.conflicts.push(format!(
                        "rule {reference}: webhook {url} already has {} from rule {}, and this rule declares {}; its trigger is not registered (give every rule on one url the same sender parameters: verify, replay, handshake, respond, accept)",
                        describe(hook.policy.as_deref()),
                        hook.rule,
                        describe(policy.as_deref()),
                    ));
                }
                continue;
            }
            if !hook.triggers.iter().any(|t| t.id == trigger.id) {
                hook.triggers.push(Arc::clone(trigger));
            }
        }
        hooks
    }

    /// The triggers registered under `url` (already normalised by the caller's route).
    pub fn get(&self, url: &str) -> Option<&[Arc<Trigger>]> {
        self.hook(url).map(|h| h.triggers.as_slice())
    }

    /// The hook registered under `url`.
    pub fn hook(&self, url: &str) -> Option<&Hook> {
        self.index.get(url).map(|&i| &self.hooks[i])
    }

    /// Every trigger, in registration order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Trigger>> {
        self.hooks.iter().flat_map(|h| &h.triggers)
    }

    /// The trigger with this ref (`core.<uuid>`).
    pub fn trigger(&self, reference: &str) -> Option<&Arc<Trigger>> {
        self.all().find(|t| t.reference == reference)
    }

    /// Whether the trigger with this ref is on a hook that verifies its sender.
    pub fn verifies(&self, reference: &str) -> bool {
        self.hooks.iter().any(|h| {
            h.policy.as_ref().is_some_and(|p| p.verify.is_some())
                && h.triggers.iter().any(|t| t.reference == reference)
        })
    }

    /// Rules not registered because their sender policy conflicts, one message each.
    pub fn conflicts(&self) -> &[String] {
        &self.conflicts
    }
}

/// A policy, for a conflict message (no secrets: only references, and not even those).
fn describe(policy: Option<&HookPolicy>) -> String {
    match policy {
        None => "no sender policy".to_owned(),
        Some(p) => match &p.verify {
            Some(v) => format!("verification {:?}", v.preset).to_lowercase(),
            None => "a replay or handshake policy".to_owned(),
        },
    }
}

/// A webhook url as StackStorm registers it: without leading and trailing slashes.
pub fn normalize_url(url: &str) -> &str {
    url.trim_matches('/')
}

/// The trigger type of the trigger instance every completed execution dispatches.
pub const ACTION_TRIGGER_TYPE: &str = "core.st2.generic.actiontrigger";

/// The trigger types every server has (built once).
pub fn system_trigger_types() -> &'static [TriggerType] {
    static TYPES: std::sync::LazyLock<Vec<TriggerType>> =
        std::sync::LazyLock::new(build_system_trigger_types);
    &TYPES
}

fn build_system_trigger_types() -> Vec<TriggerType> {
    vec![
        TriggerType {
            id: hex::encode(&Sha256::digest(ACTION_TRIGGER_TYPE.as_bytes())[..12]),
            reference: ACTION_TRIGGER_TYPE.to_owned(),
            pack: "core".to_owned(),
            name: "st2.generic.actiontrigger".to_owned(),
            description: Some(
                "Trigger encapsulating the completion of an action execution.".to_owned(),
            ),
            payload_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "execution_id": {},
                    "status": {},
                    "start_timestamp": {},
                    "action_name": {},
                    "action_ref": {},
                    "runner_ref": {},
                    "parameters": {},
                    "result": {}
                }
            }),
            parameters_schema: serde_json::json!({}),
            tags: serde_json::json!([]),
        },
        TriggerType {
            id: hex::encode(&Sha256::digest(WEBHOOK_TYPE.as_bytes())[..12]),
            reference: WEBHOOK_TYPE.to_owned(),
            pack: "core".to_owned(),
            name: "st2.webhook".to_owned(),
            description: Some(
                "Trigger type for registering webhooks that can consume arbitrary payload."
                    .to_owned(),
            ),
            payload_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "headers": {"type": "object"},
                    "body": {"anyOf": [{"type": "array"}, {"type": "object"}]}
                }
            }),
            parameters_schema: serde_json::json!({
                "type": "object",
                "properties": {"url": {"type": "string", "required": true}},
                "additionalProperties": false
            }),
            tags: serde_json::json!([]),
        },
    ]
}

/// JSON text as Python's `json.dumps(value, sort_keys=True)` writes it (", " and ": "
/// separators, non-ASCII escaped), so derived uids match StackStorm's.
pub fn python_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_python_json(value, &mut out);
    out
}

fn write_python_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_string(key, out);
                out.push_str(": ");
                write_python_json(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_python_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON value as Python's `str()` prints the equivalent object (`{'a': 1, 'b': True}`), which
/// StackStorm embeds in some error messages.
pub fn python_repr(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => python_str_repr(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", python_str_repr(k), python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The parameters schemas of StackStorm's timer trigger types (`INTERVAL_PARAMETERS_SCHEMA`,
/// `DATE_PARAMETERS_SCHEMA`, `CRON_PARAMETERS_SCHEMA` in `st2common/st2common/constants/triggers.py`).
/// Stormhook has no timers; a rule on one is checked as StackStorm checks it, and never fires.
pub fn timer_parameters_schema(trigger_type: &str) -> Option<serde_json::Value> {
    use serde_json::json;
    let schema = match trigger_type {
        "core.st2.IntervalTimer" => json!({
            "type": "object",
            "properties": {
                "timezone": {"type": "string"},
                "unit": {"enum": ["weeks", "days", "hours", "minutes", "seconds"], "required": true},
                "delta": {"type": "integer", "required": true},
            },
            "additionalProperties": false,
        }),
        "core.st2.DateTimer" => json!({
            "type": "object",
            "properties": {
                "timezone": {"type": "string"},
                "date": {"type": "string", "format": "date-time", "required": true},
            },
            "additionalProperties": false,
        }),
        "core.st2.CronTimer" => {
            let field = |min: Option<u32>, max: Option<u32>| {
                let mut f = json!({"anyOf": [{"type": "string"}, {"type": "integer"}]});
                if let (Some(min), Some(max)) = (min, max) {
                    f["minimum"] = json!(min);
                    f["maximum"] = json!(max);
                }
                f
            };
            json!({
                "type": "object",
                "properties": {
                    "timezone": {"type": "string"},
                    "year": field(None, None),
                    "month": field(Some(1), Some(12)),
                    "day": field(Some(1), Some(31)),
                    "week": field(Some(1), Some(53)),
                    "day_of_week": field(Some(0), Some(6)),
                    "hour": field(Some(0), Some(23)),
                    "minute": field(Some(0), Some(59)),
                    "second": field(Some(0), Some(59)),
                },
                "additionalProperties": false,
            })
        }
        _ => return None,
    };
    Some(schema)
}

/// APScheduler's check of a `day_of_week` cron expression (`CronTrigger(**parameters)`, which
/// StackStorm's `validate_trigger_parameters` runs after the schema): each comma-separated part
/// is `*[/step]`, `first[-last][/step]` in numbers, or weekday names (`mon`..`sun`, any case);
/// the messages are APScheduler's.
pub fn check_cron_day_of_week(value: &serde_json::Value) -> Result<(), String> {
    const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for part in text.split(',') {
        let part = part.trim();
        let expr = part.split_once('/').map_or(part, |(e, _)| e);
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let is_range = match expr.split_once('-') {
            Some((a, b)) => numeric(a) && numeric(b),
            None => numeric(expr),
        };
        if expr == "*" || is_range {
            continue;
        }
        // `(?P<first>[a-z]+)(?:-(?P<last>[a-z]+))?`, matched at the start only.
        let lower = part.to_ascii_lowercase();
        let first: String = lower.chars().take_while(char::is_ascii_lowercase).collect();
        if first.is_empty() {
            return Err(format!(
                "Unrecognized expression \"{part}\" for field \"day_of_week\""
            ));
        }
        let rest = &lower[first.len()..];
        let last: String = rest
            .strip_prefix('-')
            .map(|r| r.chars().take_while(char::is_ascii_lowercase).collect())
            .unwrap_or_default();
        for name in [first, last].into_iter().filter(|n| !n.is_empty()) {
            if !WEEKDAYS.contains(&name.as_str()) {
                return Err(format!("Invalid weekday name \"{name}\""));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// APScheduler's `day_of_week` expressions (`apscheduler/triggers/cron/expressions.py`).
    #[test]
    fn cron_day_of_week_is_checked_as_apscheduler_does() {
        for ok in [
            "*",
            "*/2",
            "0-6",
            "1,3,5",
            "mon-fri",
            "MON",
            "sun",
            "mon-fri/2",
            "5",
        ] {
            assert_eq!(
                check_cron_day_of_week(&serde_json::json!(ok)),
                Ok(()),
                "{ok}"
            );
        }
        assert_eq!(check_cron_day_of_week(&serde_json::json!(3)), Ok(()));
        for (bad, message) in [
            ("abcdef", "Invalid weekday name \"abcdef\""),
            ("a-1", "Invalid weekday name \"a\""),
            ("mon-xyz", "Invalid weekday name \"xyz\""),
            (
                "mon,",
                "Unrecognized expression \"\" for field \"day_of_week\"",
            ),
            (
                "?",
                "Unrecognized expression \"?\" for field \"day_of_week\"",
            ),
        ] {
            assert_eq!(
                check_cron_day_of_week(&serde_json::json!(bad)),
                Err(message.to_owned()),
                "{bad}"
            );
        }
    }

    fn rule(url: &str) -> RuleDoc {
        let text = format!(
            "name: r\ntrigger:\n  type: core.st2.webhook\n  parameters: {{url: \"{url}\"}}\naction: {{ref: core.noop}}\n"
        );
        RuleDoc::parse("r.yaml", &text, "p").unwrap()
    }

    /// The webhooks of `rules`, each on the trigger its type and parameters make.
    fn hooks_of(rules: &[RuleDoc]) -> Webhooks {
        let triggers: Vec<Arc<Trigger>> = rules
            .iter()
            .map(|r| {
                Arc::new(Trigger::for_rule(
                    &r.trigger.trigger_type,
                    &r.trigger.parameters,
                ))
            })
            .collect();
        Webhooks::from_rules(rules.iter().zip(&triggers))
    }

    #[test]
    fn urls_are_normalised_and_triggers_shared() {
        let rules = [
            rule("/sample/"),
            rule("sample"),
            rule("sample"),
            rule("/with/mixed/slash/"),
        ];
        let hooks = hooks_of(&rules);
        // "/sample/" and "sample" differ as parameters: two triggers under one url.
        assert_eq!(hooks.get("sample").unwrap().len(), 2);
        assert_eq!(hooks.get("with/mixed/slash").unwrap().len(), 1);
        assert!(hooks.get("/sample").is_none());
        assert_eq!(hooks.all().count(), 3);
    }

    fn named(name: &str, enabled: bool, extra: &str) -> RuleDoc {
        let text = format!(
            "name: {name}\nenabled: {enabled}\ntrigger:\n  type: core.st2.webhook\n  parameters: {{url: gh{extra}}}\naction: {{ref: core.noop}}\n"
        );
        RuleDoc::parse("r.yaml", &text, "p").unwrap()
    }

    #[test]
    fn one_url_has_one_sender_policy_and_enabled_rules_decide_it() {
        let signed = ", verify: {preset: github, secret: {datastore: s}}";
        // An unsigned disabled rule first, then a signed enabled one: the signed one holds the
        // url, and the disabled one is left out without a conflict.
        let rules = [named("old", false, ""), named("new", true, signed)];
        let hooks = hooks_of(&rules);
        let hook = hooks.hook("gh").unwrap();
        assert_eq!(hook.rule, "p.new");
        assert!(hook.policy.as_ref().unwrap().verify.is_some());
        assert_eq!(hook.triggers.len(), 1);
        assert!(hooks.conflicts().is_empty(), "{:?}", hooks.conflicts());
        // Both enabled: the first holds it, the second is refused and said so.
        let rules = [named("a", true, ""), named("b", true, signed)];
        let hooks = hooks_of(&rules);
        let hook = hooks.hook("gh").unwrap();
        assert_eq!(hook.rule, "p.a");
        assert!(hook.policy.is_none());
        assert_eq!(hook.triggers.len(), 1);
        assert_eq!(hooks.conflicts().len(), 1);
        assert!(
            hooks.conflicts()[0].contains("rule p.b"),
            "{:?}",
            hooks.conflicts()
        );
        assert!(!hooks.verifies(&hook.triggers[0].reference));
    }

    #[test]
    fn trigger_uids_use_pythons_json() {
        let t = Trigger::new(WEBHOOK_TYPE, &serde_json::json!({"url": "sample"}));
        // md5('{"url": "sample"}')
        assert_eq!(
            t.uid,
            format!(
                "trigger:core:{}:{}",
                t.name,
                hex::encode(Md5::digest(br#"{"url": "sample"}"#))
            )
        );
        assert_eq!(t.reference, format!("core.{}", t.name));
        assert_eq!(uuid::Uuid::parse_str(&t.name).unwrap().get_version_num(), 4);
        assert_eq!(
            t,
            Trigger::new(WEBHOOK_TYPE, &serde_json::json!({"url": "sample"})),
            "stable"
        );
    }

    /// `test_triggers.py` `test_get_all` and `services/triggers.py`: shadow triggers of types
    /// without parameters, stored triggers, and the triggers rules make, counted by rule.
    #[test]
    fn existing_triggers_are_shadows_stored_and_rule_made() {
        let ty = |reference: &str, params: serde_json::Value| TriggerType {
            id: reference.into(),
            reference: reference.into(),
            pack: "p".into(),
            name: reference.split_once('.').unwrap().1.into(),
            description: None,
            payload_schema: serde_json::json!({}),
            parameters_schema: params,
            tags: serde_json::json!([]),
        };
        let types = [
            ty("p.st2.simple", serde_json::json!({})),
            ty(
                "p.with_params",
                serde_json::json!({"properties": {"a": {}}}),
            ),
        ];
        let stored = [StoredTrigger {
            id: "s1".into(),
            reference: "p.mine".into(),
            pack: "p".into(),
            name: "mine".into(),
            trigger_type: "p.with_params".into(),
            parameters: serde_json::json!({"a": 1}),
            description: None,
        }];
        let on = |params: &str| {
            let text = format!(
                "name: r\ntrigger:\n  type: p.with_params\n  parameters: {params}\naction: {{ref: core.noop}}\n"
            );
            RuleDoc::parse("r.yaml", &text, "p").unwrap()
        };
        let simple = RuleDoc::parse(
            "r.yaml",
            "name: s\ntrigger: {type: p.st2.simple}\naction: {ref: core.noop}\n",
            "p",
        )
        .unwrap();
        let rules = [on("{a: 1}"), on("{a: 2}"), on("{a: 2}"), simple.clone()];
        let all = existing_triggers(&types, &stored, &rules);
        let shown: Vec<(&str, usize, TriggerOrigin)> = all
            .iter()
            .map(|e| (e.trigger.reference.as_str(), e.ref_count, e.origin))
            .collect();
        let made = Trigger::new("p.with_params", &serde_json::json!({"a": 2}));
        assert_eq!(
            shown,
            [
                ("p.st2.simple", 1, TriggerOrigin::Shadow),
                ("p.mine", 1, TriggerOrigin::Stored),
                (made.reference.as_str(), 2, TriggerOrigin::Rules),
            ]
        );
        // The shadow trigger is named as its type, pack before the first dot.
        assert_eq!(all[0].trigger.name, "st2.simple");
        assert_eq!(all[0].trigger.pack, "p");
        assert_eq!(
            Trigger::for_rule("p.st2.simple", &simple.trigger.parameters).reference,
            "p.st2.simple"
        );
        // The stored trigger goes with its last rule, not before.
        let a1 = on("{a: 1}");
        assert_eq!(
            unused_stored_trigger("p.with_params", &a1.trigger.parameters, &stored, &rules),
            None
        );
        assert_eq!(
            unused_stored_trigger(
                "p.with_params",
                &a1.trigger.parameters,
                &stored,
                &rules[1..]
            ),
            Some("s1".to_owned())
        );
    }

    #[test]
    fn python_repr_matches_str_of_a_dict() {
        let v = serde_json::json!({"value_str": "string!", "value_int": 12345, "ok": true, "none": null});
        assert_eq!(
            python_repr(&v),
            "{'value_str': 'string!', 'value_int': 12345, 'ok': True, 'none': None}"
        );
        assert_eq!(python_repr(&serde_json::json!("invalid")), "'invalid'");
    }
}
