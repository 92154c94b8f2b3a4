//! Pack config, StackStorm's way: `<pack>/config.schema.yaml` declares the pack's config keys,
//! and the operator's values file (`<configs>/<pack>.yaml`) gives their values.
//!
//! ```yaml
//! # config.schema.yaml: a map of top-level keys, each a JSON-schema-like property
//! webhook_url: {type: string, required: true, secret: true}
//! channel: {type: string, default: "#ops"}
//! retries: {type: integer, default: 3, minimum: 0}
//! server:
//!   type: object
//!   additionalProperties: false
//!   properties:
//!     host: {type: string, required: true}
//!     password: {type: string, secret: true}
//! ```
//!
//! [`ConfigSchema::validate`] turns a values file into a [`PackConfig`]: defaults filled in
//! (StackStorm fills a default where a key is absent or `null`, and builds an absent object
//! whose properties have defaults), `required` keys checked (Draft 3's `required: true` on a
//! property and Draft 4's `required: [...]` list alike), then every value checked against its
//! property. As in StackStorm, keys the schema does not name are allowed at the top level
//! (`additionalProperties` applies only where a nested schema sets it), and an optional key
//! whose default is absent or `null` may be `null`.
//!
//! The keywords checked are `type`, `enum`, `required`, `properties`, `additionalProperties`,
//! `items` (one schema or a list), `minimum`, `maximum`, `minLength`, `maxLength`, `minItems`
//! and `maxItems`; others (`pattern`, `format`, `anyOf`, ...) are accepted and not checked.
//! Values written as Jinja (`{{ st2kv.system.token }}`) are validated as the strings they are,
//! as StackStorm does; [`PackConfig::resolve`] renders them later, with a renderer the caller
//! brings.
//!
//! Error messages name the key, never its value: a value may be a secret.

use serde_json::{Map, Value};

use crate::error::{DocError, locate_key};

/// What a secret value is replaced with in API answers and logs (StackStorm's mask).
pub const MASK: &str = "********";

/// Most levels of nesting a config schema may have.
pub const MAX_SCHEMA_DEPTH: usize = 32;

/// A JSON type a property may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
    Null,
}

impl JsonType {
    const ALL: [Self; 7] = [
        Self::String,
        Self::Integer,
        Self::Number,
        Self::Boolean,
        Self::Object,
        Self::Array,
        Self::Null,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
            Self::Null => "null",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The type of `value` (`integer` for whole numbers written without a fraction).
    fn of(value: &Value) -> Self {
        match value {
            Value::String(_) => Self::String,
            Value::Number(n) if n.is_f64() => Self::Number,
            Value::Number(_) => Self::Integer,
            Value::Bool(_) => Self::Boolean,
            Value::Object(_) => Self::Object,
            Value::Array(_) => Self::Array,
            Value::Null => Self::Null,
        }
    }

    /// Draft 4: an integer is a number too.
    fn admits(self, value: &Value) -> bool {
        let found = Self::of(value);
        found == self || (self == Self::Number && found == Self::Integer)
    }
}

/// One property of a config schema.
#[derive(Debug, Clone, Default, PartialEq)]
struct Property {
    /// Empty: any type.
    types: Vec<JsonType>,
    /// Draft 3's `required: true`.
    required: bool,
    secret: bool,
    default: Option<Value>,
    choices: Option<Vec<Value>>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    object: ObjectSchema,
    items: Items,
}

impl Property {
    fn is_object(&self) -> bool {
        self.types == [JsonType::Object]
    }

    /// Whether `null` is accepted without being declared: an optional key whose default is
    /// absent or `null` (StackStorm's `allow_default_none`).
    fn null_allowed(&self) -> bool {
        !self.required && self.default.as_ref().is_none_or(Value::is_null)
    }
}

/// What an object's keys must be.
#[derive(Debug, Clone, Default, PartialEq)]
struct ObjectSchema {
    properties: Vec<(String, Property)>,
    /// Draft 4's `required: [...]`.
    required: Vec<String>,
    additional: Additional,
}

impl ObjectSchema {
    fn property(&self, name: &str) -> Option<&Property> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    fn is_required(&self, name: &str, property: &Property) -> bool {
        property.required || self.required.iter().any(|r| r == name)
    }

    /// The object an absent key of this schema gets: its properties' defaults, nested objects
    /// included (none when nothing has a default).
    fn defaults(&self) -> Option<Map<String, Value>> {
        let mut out = Map::new();
        for (name, property) in &self.properties {
            if let Some(default) = &property.default {
                out.insert(name.clone(), default.clone());
            } else if property.is_object()
                && let Some(nested) = property.object.defaults()
            {
                out.insert(name.clone(), Value::Object(nested));
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// `additionalProperties`.
#[derive(Debug, Clone, Default, PartialEq)]
enum Additional {
    #[default]
    Allowed,
    Denied,
    Schema(Box<Property>),
}

/// `items`.
#[derive(Debug, Clone, Default, PartialEq)]
enum Items {
    #[default]
    Any,
    Each(Box<Property>),
    Tuple(Vec<Property>),
}

/// A pack's `config.schema.yaml`, parsed and checked. The default schema (a pack without one)
/// accepts any mapping as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigSchema {
    root: ObjectSchema,
}

/// A validated pack config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackConfig {
    /// The validated values with defaults, secrets in clear (what actions get).
    pub values: Map<String, Value>,
    /// The keys whose schema says `secret: true`, as dotted paths (`token`, `server.password`,
    /// `servers.0.password` for an item of a list), for the keys that have a value.
    pub secret_keys: Vec<String>,
    /// The same paths, exactly (a key may contain a dot).
    secret_paths: Vec<Vec<Segment>>,
}

/// One step of a path into the values.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn dotted(path: &[Segment]) -> String {
    path.iter()
        .map(|s| match s {
            Segment::Key(k) => k.clone(),
            Segment::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl ConfigSchema {
    /// Parses `config.schema.yaml` (a mapping of top-level keys to properties).
    ///
    /// # Errors
    ///
    /// [`DocError`] for YAML errors and for properties that are not schemas (an unknown
    /// `type`, a `required` that is neither a boolean nor a list, nesting deeper than
    /// [`MAX_SCHEMA_DEPTH`], ...), located at the offending key.
    pub fn parse(path: &str, text: &str) -> Result<Self, DocError> {
        let doc: Value = yaml_serde::from_str(text).map_err(|e| DocError::from_yaml(path, &e))?;
        let fail = |at: &[String], message: String| located(path, text, at, message);
        let root = match doc {
            Value::Null => ObjectSchema::default(),
            Value::Object(map) => {
                let mut root = ObjectSchema::default();
                for (name, schema) in &map {
                    let at = vec![name.clone()];
                    root.properties
                        .push((name.clone(), parse_property(schema, &at, &fail)?));
                }
                root
            }
            other => {
                return Err(DocError {
                    path: path.to_owned(),
                    line: None,
                    column: None,
                    message: format!(
                        "a config schema must be a mapping of config keys to their schemas, found {}",
                        type_phrase(&other)
                    ),
                });
            }
        };
        Ok(Self { root })
    }

    /// Whether the schema declares no key.
    pub fn is_empty(&self) -> bool {
        self.root.properties.is_empty()
    }

    /// The config of a pack that has no values file: the schema's defaults only. Required keys
    /// are not checked (StackStorm validates a config only when it has a values file).
    pub fn defaults(&self) -> PackConfig {
        let mut walk = Walk::new("", "", "");
        let mut values = self.root.defaults().unwrap_or_default();
        // Only to find the secrets among the defaults; defaults are not validated.
        let _ = walk.object(&self.root, &mut values, &mut Vec::new(), false);
        walk.into_config(values)
    }

    /// Validates the values file of pack `pack` (`path` is only used in messages) against
    /// this schema: defaults filled in, required keys and types checked.
    ///
    /// # Errors
    ///
    /// [`DocError`] for YAML errors, values that are not a mapping, a missing required key
    /// (named, with the file), a value of the wrong type (the key, the expected type and the
    /// type found), and the other checked keywords. Messages never include a value.
    pub fn validate(&self, pack: &str, path: &str, text: &str) -> Result<PackConfig, DocError> {
        let doc: Value = yaml_serde::from_str(text).map_err(|e| DocError::from_yaml(path, &e))?;
        let mut values = match doc {
            Value::Null => Map::new(),
            Value::Object(map) => map,
            other => {
                return Err(DocError {
                    path: path.to_owned(),
                    line: None,
                    column: None,
                    message: format!(
                        "the config of pack {pack:?} must be a mapping of config keys to values, found {}",
                        type_phrase(&other)
                    ),
                });
            }
        };
        let mut walk = Walk::new(pack, path, text);
        walk.object(&self.root, &mut values, &mut Vec::new(), true)?;
        Ok(walk.into_config(values))
    }
}

/// An error at the key `keys` of `text`, or at its nearest parent that can be found (a key
/// written inline, `a: {b: 1}`, is found at `a`).
fn located(path: &str, text: &str, keys: &[String], message: String) -> DocError {
    let location = (1..=keys.len())
        .rev()
        .find_map(|n| locate_key(text, &keys[..n].join(".")));
    DocError {
        path: path.to_owned(),
        line: location.map(|(l, _)| l),
        column: location.map(|(_, c)| c),
        message,
    }
}

fn type_phrase(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Object(_) => "a mapping",
        Value::Array(_) => "a list",
        Value::Null => "nothing",
    }
}

/// Parses the schema of the key at `at` (the path of keys in the schema file, for messages).
fn parse_property(
    schema: &Value,
    at: &[String],
    fail: &impl Fn(&[String], String) -> DocError,
) -> Result<Property, DocError> {
    if at.len() > MAX_SCHEMA_DEPTH * 2 {
        return Err(fail(
            at,
            format!("the config schema nests deeper than {MAX_SCHEMA_DEPTH} levels"),
        ));
    }
    let map = match schema {
        // `key:` or `key: {}`: any value (StackStorm's SCHEMA_ANY_TYPE).
        Value::Null => return Ok(Property::default()),
        Value::Object(map) => map,
        other => {
            return Err(fail(
                at,
                format!(
                    "the schema of a config key must be a mapping (type, description, default, ...), found {}",
                    type_phrase(other)
                ),
            ));
        }
    };
    let key = |k: &str| {
        let mut path = at.to_vec();
        path.push(k.to_owned());
        path
    };
    let number = |k: &str| -> Result<Option<f64>, DocError> {
        map.get(k)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| fail(&key(k), format!("`{k}` must be a number")))
            })
            .transpose()
    };
    let count = |k: &str| -> Result<Option<u64>, DocError> {
        map.get(k)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| fail(&key(k), format!("`{k}` must be a non-negative integer")))
            })
            .transpose()
    };
    let mut property = Property {
        default: map.get("default").cloned(),
        minimum: number("minimum")?,
        maximum: number("maximum")?,
        min_length: count("minLength")?,
        max_length: count("maxLength")?,
        min_items: count("minItems")?,
        max_items: count("maxItems")?,
        ..Property::default()
    };
    let type_names: Vec<&Value> = match map.get("type") {
        None => Vec::new(),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
    };
    for name in type_names {
        let parsed = name.as_str().and_then(JsonType::parse).ok_or_else(|| {
            fail(
                &key("type"),
                format!(
                    "unknown type {name}: use string, integer, number, boolean, object, array or null"
                ),
            )
        })?;
        property.types.push(parsed);
    }
    match map.get("required") {
        None => {}
        Some(Value::Bool(flag)) => property.required = *flag,
        Some(Value::Array(list)) => {
            for name in list {
                let name = name.as_str().ok_or_else(|| {
                    fail(&key("required"), "`required` lists key names".to_owned())
                })?;
                property.object.required.push(name.to_owned());
            }
        }
        Some(_) => {
            return Err(fail(
                &key("required"),
                "`required` must be true, false or a list of key names".to_owned(),
            ));
        }
    }
    match map.get("secret") {
        None => {}
        Some(Value::Bool(flag)) => property.secret = *flag,
        Some(_) => {
            return Err(fail(
                &key("secret"),
                "`secret` must be true or false".to_owned(),
            ));
        }
    }
    match map.get("enum") {
        None => {}
        Some(Value::Array(list)) => property.choices = Some(list.clone()),
        Some(_) => return Err(fail(&key("enum"), "`enum` must be a list".to_owned())),
    }
    match map.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            for (name, schema) in props {
                let mut path = key("properties");
                path.push(name.clone());
                property
                    .object
                    .properties
                    .push((name.clone(), parse_property(schema, &path, fail)?));
            }
        }
        Some(_) => {
            return Err(fail(
                &key("properties"),
                "`properties` must be a mapping of key names to schemas".to_owned(),
            ));
        }
    }
    property.object.additional = match map.get("additionalProperties") {
        None | Some(Value::Bool(true)) => Additional::Allowed,
        Some(Value::Bool(false)) => Additional::Denied,
        Some(schema @ Value::Object(_)) => Additional::Schema(Box::new(parse_property(
            schema,
            &key("additionalProperties"),
            fail,
        )?)),
        Some(_) => {
            return Err(fail(
                &key("additionalProperties"),
                "`additionalProperties` must be true, false or a schema".to_owned(),
            ));
        }
    };
    property.items = match map.get("items") {
        None | Some(Value::Null) => Items::Any,
        Some(schema @ Value::Object(_)) => {
            Items::Each(Box::new(parse_property(schema, &key("items"), fail)?))
        }
        Some(Value::Array(list)) => Items::Tuple(
            list.iter()
                .map(|schema| parse_property(schema, &key("items"), fail))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => {
            return Err(fail(
                &key("items"),
                "`items` must be a schema or a list of schemas".to_owned(),
            ));
        }
    };
    Ok(property)
}

/// One walk of the values along the schema: fills defaults, checks, and collects secrets.
struct Walk<'a> {
    pack: &'a str,
    path: &'a str,
    text: &'a str,
    secrets: Vec<Vec<Segment>>,
}

impl<'a> Walk<'a> {
    fn new(pack: &'a str, path: &'a str, text: &'a str) -> Self {
        Self {
            pack,
            path,
            text,
            secrets: Vec::new(),
        }
    }

    fn into_config(self, values: Map<String, Value>) -> PackConfig {
        PackConfig {
            values,
            secret_keys: self.secrets.iter().map(|p| dotted(p)).collect(),
            secret_paths: self.secrets,
        }
    }

    /// An error about the key at `at`, located at it (or at its nearest located parent).
    fn error(&self, at: &[Segment], message: String) -> DocError {
        let keys: Vec<String> = at
            .iter()
            .map_while(|s| match s {
                Segment::Key(k) => Some(k.clone()),
                Segment::Index(_) => None,
            })
            .collect();
        located(self.path, self.text, &keys, message)
    }

    /// Fills the defaults of `map`, checks it against `schema` (when `check`), and collects
    /// its secrets.
    fn object(
        &mut self,
        schema: &ObjectSchema,
        map: &mut Map<String, Value>,
        at: &mut Vec<Segment>,
        check: bool,
    ) -> Result<(), DocError> {
        for (name, property) in &schema.properties {
            let absent_or_null = map.get(name).is_none_or(Value::is_null);
            if let Some(default) = &property.default
                && absent_or_null
            {
                map.insert(name.clone(), default.clone());
            } else if !map.contains_key(name)
                && property.is_object()
                && let Some(nested) = property.object.defaults()
            {
                // StackStorm builds an absent object whose properties have defaults.
                map.insert(name.clone(), Value::Object(nested));
            }
        }
        if check {
            let required = schema
                .properties
                .iter()
                .filter(|(name, property)| schema.is_required(name, property))
                .map(|(name, _)| name)
                .chain(schema.required.iter());
            for name in required {
                if !map.contains_key(name) {
                    at.push(Segment::Key(name.clone()));
                    let shown = dotted(at);
                    at.pop();
                    let mut error = self.error(
                        at,
                        format!(
                            "required config key {shown:?} is missing (the config.schema.yaml of pack {:?} requires it)",
                            self.pack
                        ),
                    );
                    if at.is_empty() {
                        error.line = None;
                        error.column = None;
                    }
                    return Err(error);
                }
            }
        }
        for (name, value) in map.iter_mut() {
            at.push(Segment::Key(name.clone()));
            let outcome = match schema.property(name) {
                Some(property) => {
                    let required = schema.is_required(name, property);
                    self.value(property, required, value, at, check)
                }
                None => match &schema.additional {
                    Additional::Allowed => Ok(()),
                    Additional::Denied if check => {
                        let parent = dotted(&at[..at.len() - 1]);
                        let whose = if parent.is_empty() {
                            "the schema".to_owned()
                        } else {
                            format!("the schema of {parent:?}")
                        };
                        Err(self.error(
                            at,
                            format!(
                                "config key {:?} is not allowed: {whose} sets additionalProperties: false",
                                dotted(at)
                            ),
                        ))
                    }
                    Additional::Denied => Ok(()),
                    Additional::Schema(property) => self.value(property, false, value, at, check),
                },
            };
            at.pop();
            outcome?;
        }
        Ok(())
    }

    /// Checks one value against its property (when `check`) and walks into it.
    fn value(
        &mut self,
        property: &Property,
        required: bool,
        value: &mut Value,
        at: &mut Vec<Segment>,
        check: bool,
    ) -> Result<(), DocError> {
        if value.is_null() && !required && property.null_allowed() {
            return Ok(());
        }
        if check {
            self.check(property, value, at)?;
        }
        if property.secret {
            self.secrets.push(at.clone());
        }
        match value {
            Value::Object(map) => self.object(&property.object, map, at, check)?,
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    let schema = match &property.items {
                        Items::Any => continue,
                        Items::Each(schema) => schema.as_ref(),
                        Items::Tuple(list) => match list.get(index) {
                            Some(schema) => schema,
                            None => continue,
                        },
                    };
                    if item.is_null()
                        && let Some(default) = &schema.default
                    {
                        *item = default.clone();
                    }
                    at.push(Segment::Index(index));
                    let outcome = self.value(schema, false, item, at, check);
                    at.pop();
                    outcome?;
                }
            }
            _ => {}
        }
        if property.secret {
            // A secret's own secrets are covered by it.
            let outer = self.secrets.iter().rposition(|p| p == at);
            if let Some(outer) = outer {
                self.secrets.truncate(outer + 1);
            }
        }
        Ok(())
    }

    /// The checks of one value's own keywords (not its contents).
    fn check(&self, property: &Property, value: &Value, at: &[Segment]) -> Result<(), DocError> {
        let key = dotted(at);
        let fail = |message: String| Err(self.error(at, format!("config key {key:?} {message}")));
        if !property.types.is_empty() && !property.types.iter().any(|t| t.admits(value)) {
            let expected: Vec<&str> = property.types.iter().map(|t| t.name()).collect();
            return fail(format!(
                "must be of type {}, found {}",
                expected.join(" or "),
                JsonType::of(value).name()
            ));
        }
        if let Some(choices) = &property.choices
            && !choices.contains(value)
        {
            let shown: Vec<String> = choices.iter().map(Value::to_string).collect();
            return fail(format!("must be one of {}", shown.join(", ")));
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = property.minimum
                && n < min
            {
                return fail(format!("must be at least {min}"));
            }
            if let Some(max) = property.maximum
                && n > max
            {
                return fail(format!("must be at most {max}"));
            }
        }
        if let Value::String(s) = value {
            let chars = s.chars().count() as u64;
            if let Some(min) = property.min_length
                && chars < min
            {
                return fail(format!("must be at least {min} characters long"));
            }
            if let Some(max) = property.max_length
                && chars > max
            {
                return fail(format!("must be at most {max} characters long"));
            }
        }
        if let Value::Array(items) = value {
            let len = items.len() as u64;
            if let Some(min) = property.min_items
                && len < min
            {
                return fail(format!("must have at least {min} items"));
            }
            if let Some(max) = property.max_items
                && len > max
            {
                return fail(format!("must have at most {max} items"));
            }
        }
        Ok(())
    }
}

fn at_path<'v>(values: &'v Map<String, Value>, path: &[Segment]) -> Option<&'v Value> {
    let (Segment::Key(first), rest) = path.split_first()? else {
        return None;
    };
    rest.iter()
        .try_fold(values.get(first)?, |value, segment| match segment {
            Segment::Key(k) => value.get(k.as_str()),
            Segment::Index(i) => value.get(*i),
        })
}

fn at_path_mut<'v>(values: &'v mut Map<String, Value>, path: &[Segment]) -> Option<&'v mut Value> {
    let (Segment::Key(first), rest) = path.split_first()? else {
        return None;
    };
    rest.iter()
        .try_fold(values.get_mut(first)?, |value, segment| match segment {
            Segment::Key(k) => value.get_mut(k.as_str()),
            Segment::Index(i) => value.get_mut(*i),
        })
}

/// Whether `text` is a Jinja template (StackStorm's `is_jinja_expression`).
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

impl PackConfig {
    /// The values with every secret replaced by `********` (for API answers and logs).
    pub fn masked(&self) -> Map<String, Value> {
        let mut values = self.values.clone();
        for path in &self.secret_paths {
            if let Some(value) = at_path_mut(&mut values, path) {
                *value = Value::String(MASK.to_owned());
            }
        }
        values
    }

    /// Every secret value as a string (non-empty ones, each once), so the host can redact them
    /// from anything it records. A secret that is a list or a mapping gives each of its
    /// scalars.
    pub fn secret_values(&self) -> Vec<String> {
        fn scalars(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Null => {}
                Value::String(s) => out.push(s.clone()),
                Value::Number(_) | Value::Bool(_) => out.push(value.to_string()),
                Value::Array(items) => items.iter().for_each(|v| scalars(v, out)),
                Value::Object(map) => map.values().for_each(|v| scalars(v, out)),
            }
        }
        let mut out = Vec::new();
        for path in &self.secret_paths {
            if let Some(value) = at_path(&self.values, path) {
                scalars(value, &mut out);
            }
        }
        out.retain(|s| !s.is_empty());
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether some value is a Jinja template (a `{{ st2kv... }}` reference).
    pub fn has_templates(&self) -> bool {
        fn any(value: &Value) -> bool {
            match value {
                Value::String(s) => is_template(s),
                Value::Array(items) => items.iter().any(any),
                Value::Object(map) => map.values().any(any),
                _ => false,
            }
        }
        self.values.values().any(any)
    }

    /// The same config with every template string replaced by what `render` makes of it
    /// (StackStorm renders `{{ st2kv.system.x }}` values against the datastore each time a
    /// config is used); the secret keys stay the same.
    ///
    /// # Errors
    ///
    /// The first template that does not render: its key (a dotted path) and `render`'s error.
    pub fn resolve<E>(
        &self,
        mut render: impl FnMut(&str) -> Result<Value, E>,
    ) -> Result<Self, (String, E)> {
        fn walk<E>(
            value: &mut Value,
            at: &mut Vec<Segment>,
            render: &mut impl FnMut(&str) -> Result<Value, E>,
        ) -> Result<(), (String, E)> {
            match value {
                Value::String(s) if is_template(s) => {
                    *value = render(s).map_err(|e| (dotted(at), e))?;
                }
                Value::Array(items) => {
                    for (index, item) in items.iter_mut().enumerate() {
                        at.push(Segment::Index(index));
                        walk(item, at, render)?;
                        at.pop();
                    }
                }
                Value::Object(map) => {
                    for (key, item) in map.iter_mut() {
                        at.push(Segment::Key(key.clone()));
                        walk(item, at, render)?;
                        at.pop();
                    }
                }
                _ => {}
            }
            Ok(())
        }
        let mut resolved = self.clone();
        if !self.has_templates() {
            return Ok(resolved);
        }
        for (key, value) in resolved.values.iter_mut() {
            walk(value, &mut vec![Segment::Key(key.clone())], &mut render)?;
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = r##"
webhook_url: {type: string, required: true, secret: true}
channel: {type: string, default: "#ops"}
retries: {type: integer, default: 3, minimum: 0}
level: {type: string, enum: [debug, info]}
note: {type: string}
server:
  type: object
  additionalProperties: false
  properties:
    host: {type: string, required: true}
    port: {type: integer, default: 443}
    password: {type: string, secret: true}
"##;

    fn schema() -> ConfigSchema {
        ConfigSchema::parse("t/config.schema.yaml", SCHEMA).unwrap()
    }

    fn validate(values: &str) -> Result<PackConfig, String> {
        schema()
            .validate("t", "configs/t.yaml", values)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_filled_and_unknown_top_level_keys_allowed() {
        let config =
            validate("webhook_url: https://hooks.example/T0K3N\nserver: {host: a}\nextra: 1\n")
                .unwrap();
        assert_eq!(
            Value::Object(config.values.clone()),
            json!({
                "webhook_url": "https://hooks.example/T0K3N",
                "channel": "#ops",
                "retries": 3,
                "server": {"host": "a", "port": 443},
                "extra": 1,
            })
        );
        assert_eq!(config.secret_keys, ["webhook_url"]);
    }

    #[test]
    fn a_null_value_takes_the_default_and_an_optional_key_may_be_null() {
        let config =
            validate("webhook_url: x\nchannel: null\nnote: null\nserver: {host: a}\n").unwrap();
        assert_eq!(config.values["channel"], "#ops");
        assert_eq!(config.values["note"], Value::Null);
    }

    #[test]
    fn a_missing_required_key_is_named_with_the_file() {
        assert_eq!(
            validate("channel: x\n").unwrap_err(),
            "configs/t.yaml: required config key \"webhook_url\" is missing (the config.schema.yaml of pack \"t\" requires it)"
        );
        assert_eq!(
            validate("webhook_url: x\nserver:\n  port: 1\n").unwrap_err(),
            "configs/t.yaml:2:1: required config key \"server.host\" is missing (the config.schema.yaml of pack \"t\" requires it)"
        );
    }

    #[test]
    fn a_wrong_type_names_the_key_the_expected_and_the_found_type_but_not_the_value() {
        let err = validate("webhook_url: 42\n").unwrap_err();
        assert_eq!(
            err,
            "configs/t.yaml:1:1: config key \"webhook_url\" must be of type string, found integer"
        );
        assert_eq!(
            validate("webhook_url: x\nserver:\n  host: a\n  port: \"443\"\n").unwrap_err(),
            "configs/t.yaml:4:3: config key \"server.port\" must be of type integer, found string"
        );
        assert_eq!(
            validate("webhook_url: x\nretries: 1.5\nserver: {host: a}\n").unwrap_err(),
            "configs/t.yaml:2:1: config key \"retries\" must be of type integer, found number"
        );
    }

    #[test]
    fn other_keywords_are_checked() {
        assert_eq!(
            validate("webhook_url: x\nlevel: trace\nserver: {host: a}\n").unwrap_err(),
            "configs/t.yaml:2:1: config key \"level\" must be one of \"debug\", \"info\""
        );
        assert_eq!(
            validate("webhook_url: x\nretries: -1\nserver: {host: a}\n").unwrap_err(),
            "configs/t.yaml:2:1: config key \"retries\" must be at least 0"
        );
        assert_eq!(
            validate("webhook_url: x\nserver: {host: a, extra: 1}\n").unwrap_err(),
            "configs/t.yaml:2:1: config key \"server.extra\" is not allowed: the schema of \"server\" sets additionalProperties: false"
        );
    }

    #[test]
    fn values_that_are_not_a_mapping_or_not_yaml_are_refused() {
        assert_eq!(
            validate("- a\n- b\n").unwrap_err(),
            "configs/t.yaml: the config of pack \"t\" must be a mapping of config keys to values, found a list"
        );
        assert!(
            validate("webhook_url: [unclosed\n")
                .unwrap_err()
                .starts_with("configs/t.yaml:")
        );
    }

    #[test]
    fn without_a_schema_values_are_used_as_they_are() {
        let config = ConfigSchema::default()
            .validate("t", "configs/t.yaml", "a: 1\nb: {c: [x]}\n")
            .unwrap();
        assert_eq!(
            Value::Object(config.values),
            json!({"a": 1, "b": {"c": ["x"]}})
        );
        assert!(config.secret_keys.is_empty());
        let empty = ConfigSchema::default()
            .validate("t", "configs/t.yaml", "# nothing yet\n")
            .unwrap();
        assert!(empty.values.is_empty());
    }

    #[test]
    fn without_values_the_defaults_serve_and_required_is_not_checked() {
        let config = schema().defaults();
        assert_eq!(
            Value::Object(config.values),
            json!({"channel": "#ops", "retries": 3, "server": {"port": 443}})
        );
    }

    #[test]
    fn secrets_are_masked_and_listed_at_every_depth() {
        let schema = ConfigSchema::parse(
            "s.yaml",
            r#"
token: {type: string, secret: true}
server:
  type: object
  properties:
    password: {type: string, secret: true}
servers:
  type: array
  items:
    type: object
    properties:
      key: {secret: true}
hosts:
  type: object
  additionalProperties: {type: object, properties: {pw: {secret: true}}}
blob: {type: object, secret: true, properties: {inner: {secret: true}}}
empty: {type: string, secret: true}
"#,
        )
        .unwrap();
        let config = schema
            .validate(
                "t",
                "c.yaml",
                "token: T1\nserver: {password: P2, user: u}\nservers: [{key: K3}, {key: 4}]\nhosts: {a.example: {pw: P5}}\nblob: {inner: I6, n: 7}\nempty: ''\nplain: visible\n",
            )
            .unwrap();
        let mut keys = config.secret_keys.clone();
        keys.sort();
        assert_eq!(
            keys,
            [
                "blob",
                "empty",
                "hosts.a.example.pw",
                "server.password",
                "servers.0.key",
                "servers.1.key",
                "token"
            ]
        );
        assert_eq!(
            Value::Object(config.masked()),
            json!({
                "token": MASK,
                "server": {"password": MASK, "user": "u"},
                "servers": [{"key": MASK}, {"key": MASK}],
                "hosts": {"a.example": {"pw": MASK}},
                "blob": MASK,
                "empty": MASK,
                "plain": "visible",
            })
        );
        assert_eq!(
            config.secret_values(),
            ["4", "7", "I6", "K3", "P2", "P5", "T1"]
        );
        assert_eq!(config.values["token"], "T1", "values keep secrets in clear");
    }

    #[test]
    fn templates_are_validated_as_strings_and_resolved_by_the_caller() {
        let config = validate(
            "webhook_url: \"{{ st2kv.system.hook }}\"\nserver: {host: a, password: \"{{ st2kv.system.pw }}\"}\n",
        )
        .unwrap();
        assert!(config.has_templates());
        let resolved = config
            .resolve(|t| {
                Ok::<_, String>(json!(match t {
                    "{{ st2kv.system.hook }}" => "https://h/SECRET",
                    _ => "PW",
                }))
            })
            .unwrap();
        assert_eq!(resolved.values["webhook_url"], "https://h/SECRET");
        assert_eq!(resolved.values["server"]["password"], "PW");
        assert_eq!(resolved.secret_values(), ["PW", "https://h/SECRET"]);
        let failed = config
            .resolve(|t| {
                if t.contains("pw") {
                    Err("undefined")
                } else {
                    Ok(json!("x"))
                }
            })
            .unwrap_err();
        assert_eq!(failed, ("server.password".to_owned(), "undefined"));
    }

    #[test]
    fn broken_schemas_are_refused_at_the_key() {
        let err = |text: &str| {
            ConfigSchema::parse("t/config.schema.yaml", text)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("a:\n  type: strng\n"),
            "t/config.schema.yaml:2:3: unknown type \"strng\": use string, integer, number, boolean, object, array or null"
        );
        assert_eq!(
            err("a:\n  type: object\n  properties:\n    b: {secret: yes please}\n"),
            "t/config.schema.yaml:4:5: `secret` must be true or false"
        );
        assert_eq!(
            err("a: 5\n"),
            "t/config.schema.yaml:1:1: the schema of a config key must be a mapping (type, description, default, ...), found a number"
        );
        assert_eq!(
            err("- a\n"),
            "t/config.schema.yaml: a config schema must be a mapping of config keys to their schemas, found a list"
        );
        let mut deep = String::new();
        for level in 0..=MAX_SCHEMA_DEPTH {
            deep.push_str(&"  ".repeat(level * 2));
            deep.push_str(&format!("k{level}:\n"));
            deep.push_str(&"  ".repeat(level * 2 + 1));
            deep.push_str("properties:\n");
        }
        assert!(
            err(&deep).contains("nests deeper than 32 levels"),
            "{}",
            err(&deep)
        );
        assert!(
            ConfigSchema::parse("s", "a:\nb: {}\n")
                .unwrap()
                .root
                .properties
                .len()
                == 2
        );
    }
}
