//! `st2kv.system` and `st2kv.user` in templates: StackStorm's `KeyValueLookup`
//! (`st2common/services/keyvalues.py`, `docs/st2-jinja-filters.md` §0.2).
//!
//! A key that does not exist renders as `""` rather than failing as undefined, even with strict
//! undefined (`{{ st2kv.system.missing | int }}` is `0`), and dotted keys resolve step by step
//! (`st2kv.system.a.b` is the key `a.b`). A key that exists is its value (a string); a missing
//! key, or one that has dotted children, is a [`Lookup`] that prints as its value (or `""`),
//! which every filter, test and comparison receives as that string. Only `decrypt_kv` sees the
//! lookup itself, to name the missing key in its error as StackStorm does.
//!
//! Deliberate differences, which follow from handing values on as strings: StackStorm's
//! lookup object compares by identity (`st2kv.system.k == 'foo'` is always false there), is
//! truthy even when empty, has no length and is not JSON serializable; here it behaves as its
//! string.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectRepr, Serde};

/// One scope's values, shared by the lookups made from it.
#[derive(Debug)]
struct Scope {
    /// `system` or `user`.
    name: &'static str,
    values: BTreeMap<String, serde_json::Value>,
}

/// A scope (`st2kv.system`) or a key of it that is missing or has dotted children.
#[derive(Debug)]
pub(crate) struct Lookup {
    scope: Arc<Scope>,
    /// `None` for the scope itself.
    key: Option<String>,
}

impl Lookup {
    /// The lookup of one scope over its values.
    pub(crate) fn scope(
        name: &'static str,
        values: &serde_json::Map<String, serde_json::Value>,
    ) -> Value {
        let scope = Scope {
            name,
            values: values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        Value::from_object(Self {
            scope: Arc::new(scope),
            key: None,
        })
    }

    /// The value of `key`, or a lookup that prints as `""` when it does not exist.
    fn get(&self, key: String) -> Value {
        let prefix = format!("{key}.");
        let has_children = self
            .scope
            .values
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix));
        match self.scope.values.get(&key) {
            // An empty value stays a lookup too: `decrypt_kv` names it.
            Some(value) if !has_children && value.as_str() != Some("") => match value {
                serde_json::Value::String(s) => Value::from(s.as_str()),
                other => Value::from(Serde(other)),
            },
            _ => Value::from_object(Self {
                scope: Arc::clone(&self.scope),
                key: Some(key),
            }),
        }
    }

    /// The key's value as text (`""` when missing).
    fn text(&self) -> String {
        match self.key.as_ref().and_then(|k| self.scope.values.get(k)) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        }
    }

    /// `st2kv.<scope>.<key>`, as `decrypt_kv` names a missing key.
    pub(crate) fn key_name(&self) -> String {
        format!(
            "st2kv.{}.{}",
            self.scope.name,
            self.key.as_deref().unwrap_or_default()
        )
    }
}

impl Object for Lookup {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        if self.key.is_none() {
            ObjectRepr::Map
        } else {
            ObjectRepr::Plain
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        // Attributes starting with `_` are not keys (Jinja's sandbox refuses them).
        if name.starts_with('_') {
            return None;
        }
        Some(match &self.key {
            Some(prefix) => self.get(format!("{prefix}.{name}")),
            None => self.get(name.to_owned()),
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        if self.key.is_some() {
            return Enumerator::NonEnumerable;
        }
        let keys: Vec<Value> = self
            .scope
            .values
            .keys()
            .map(|k| Value::from(k.as_str()))
            .collect();
        Enumerator::Values(keys)
    }

    fn is_true(self: &Arc<Self>) -> bool {
        self.key.is_none() || !self.text().is_empty()
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result
    where
        Self: Sized + 'static,
    {
        match self.key {
            Some(_) => f.write_str(&self.text()),
            None => write!(f, "st2kv.{}", self.scope.name),
        }
    }
}

/// A key's lookup as its string (what filters, tests and comparisons receive); other values
/// as they are.
pub(crate) fn as_text(value: Value) -> Value {
    match value.downcast_object_ref::<Lookup>() {
        Some(lookup) if lookup.key.is_some() => Value::from(lookup.text()),
        _ => value,
    }
}

/// The context of a render: `st2kv`'s scopes become lookups (with an empty `user` scope when
/// none is given: Stormhook keeps no user-scoped keys).
pub(crate) fn context(context: &serde_json::Value) -> Value {
    let Some(map) = context.as_object() else {
        return Value::from(Serde(context));
    };
    let Some(st2kv) = map.get("st2kv").and_then(serde_json::Value::as_object) else {
        return Value::from(Serde(context));
    };
    let empty = serde_json::Map::new();
    let mut scopes: Vec<(Value, Value)> = Vec::new();
    for (name, values) in st2kv {
        let value = match (name.as_str(), values.as_object()) {
            ("system", Some(values)) => Lookup::scope("system", values),
            ("user", Some(values)) => Lookup::scope("user", values),
            _ => Value::from(Serde(values)),
        };
        scopes.push((Value::from(name.as_str()), value));
    }
    if !st2kv.contains_key("user") {
        scopes.push((Value::from("user"), Lookup::scope("user", &empty)));
    }
    let pairs: Vec<(Value, Value)> = map
        .iter()
        .map(|(k, v)| {
            let value = if k == "st2kv" {
                Value::from_pairs(scopes.clone())
            } else {
                Value::from(Serde(v))
            };
            (Value::from(k.as_str()), value)
        })
        .collect();
    Value::from_pairs(pairs)
}
