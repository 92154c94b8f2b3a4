//! Action parameters (`docs/st2-api.md` §3.4): a rule's `action.parameters` rendered as
//! Jinja with `trigger`, `st2kv`, `action_context`, `rule` (the values a rule component
//! returned) and every other parameter by name, in dependency order, then cast to the action's
//! declared types. As in StackStorm's `param.py`, a template of an untyped or `string`
//! parameter renders as text, a typed one is cast from what it renders (a single `{{ x }}`
//! keeps `x`'s type, which the cast gives anyway), and a value whose template does not parse is
//! used as it is.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::template::Renderer;

/// Most parameters (given and declared defaults) one render takes (StackStorm has no limit).
/// Rendering walks the dependency order a round at a time and gives each parameter a context
/// holding all those rendered before it, so its cost grows faster than the square of the count:
/// 4,000 chained parameters (`p1: "{{ p0 }}"`, ...) took 19 s in a debug build, and a 4 MiB
/// request body holds 200,000.
pub const MAX_PARAMETERS: usize = 256;

/// Renders `given` parameters (plus the declared defaults not given) and casts them by the
/// declared schemas (`{name: {type, default, ...}}`). `context` holds `trigger`, `st2kv`, ...
///
/// # Errors
///
/// StackStorm's messages: `Dependency unsatisfied in variable "<name>"`,
/// `Cyclic dependency found in the following variables: ...`,
/// `Failed to render parameter "<p>": ...`, and cast failures.
pub fn render_parameters(
    given: &Map<String, Value>,
    declared: &Map<String, Value>,
    context: &Map<String, Value>,
    renderer: &Renderer,
) -> Result<Map<String, Value>, ParamsError> {
    let mut raw: BTreeMap<String, Value> = BTreeMap::new();
    for (name, schema) in declared {
        if let Some(default) = schema.get("default") {
            raw.insert(name.clone(), default.clone());
        }
    }
    for (name, value) in given {
        raw.insert(name.clone(), value.clone());
    }
    if raw.len() > MAX_PARAMETERS {
        return Err(ParamsError::TooMany(raw.len()));
    }
    // Dependencies between parameters: the top-level names each template uses. Names the
    // template binds itself (loop variables, `set`, macros) are not reported by `variables`;
    // global functions (`range`, `dict`, `namespace`) are, and are no dependency unless a
    // parameter or context value of that name shadows them.
    // A value with a template that does not parse is no template at all: it is used as it is
    // (`param.py::_process` catches the `TemplateSyntaxError`; StackStorm parses the value
    // whole, so one broken string makes the whole value plain).
    let plain: BTreeSet<&String> = raw
        .iter()
        .filter(|(_, value)| any_malformed(renderer, value))
        .map(|(name, _)| name)
        .collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, value) in &raw {
        let mut used = BTreeSet::new();
        if !plain.contains(name) {
            variables(renderer, value, &mut used);
        }
        for var in &used {
            if !raw.contains_key(var) && !context.contains_key(var) && !renderer.is_global(var) {
                return Err(ParamsError::DependencyUnsatisfied(var.clone()));
            }
        }
        // A parameter that uses itself is a cycle, as in StackStorm.
        used.retain(|v| raw.contains_key(v));
        deps.insert(name.clone(), used);
    }
    let cycles = cycle_names(&deps);
    if !cycles.is_empty() {
        return Err(ParamsError::Cyclic(cycles));
    }
    let mut rendered: Map<String, Value> = Map::new();
    while rendered.len() < raw.len() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(name, needs)| {
                !rendered.contains_key(*name) && needs.iter().all(|n| rendered.contains_key(n))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            // Unreachable: `cycle_names` found no cycle.
            return Err(ParamsError::Cyclic(
                deps.keys()
                    .filter(|n| !rendered.contains_key(*n))
                    .cloned()
                    .collect(),
            ));
        }
        for name in ready {
            let mut ctx = context.clone();
            ctx.extend(rendered.iter().map(|(k, v)| (k.clone(), v.clone())));
            let ctx = Value::Object(ctx);
            let kind = declared
                .get(&name)
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str);
            let render_error = |reason| ParamsError::Render {
                name: name.clone(),
                reason,
            };
            let value = match &raw[&name] {
                plain_value if plain.contains(&name) => plain_value.clone(),
                // A template of an untyped or `string` parameter renders as text, as in
                // StackStorm (`param.py::_render`): `{{ n }}` of 1 is "1", of True "True".
                // Typed ones keep the expression's type, which the cast below gives anyway.
                Value::String(text)
                    if matches!(kind, None | Some("string"))
                        && (text.contains("{{") || text.contains("{%")) =>
                {
                    Value::String(renderer.render_text(text, &ctx).map_err(render_error)?)
                }
                other => render_deep(renderer, other, &ctx).map_err(render_error)?,
            };
            let value = match kind {
                Some(kind) => cast(&name, value, kind)?,
                None => value,
            };
            rendered.insert(name, value);
        }
    }
    Ok(rendered)
}

/// Why parameters could not be rendered; the messages are StackStorm's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamsError {
    /// A template uses a name that is neither a parameter nor in the context.
    #[error("Dependency unsatisfied in variable \"{0}\"")]
    DependencyUnsatisfied(String),
    /// Parameters refer to each other (or one to itself) in a cycle: one name per cycle.
    #[error(
        "Cyclic dependency found in the following variables: {}. Likely the variable is referencing itself",
        .0.join(", ")
    )]
    Cyclic(Vec<String>),
    /// A template failed to render.
    #[error("Failed to render parameter \"{name}\": {reason}")]
    Render {
        /// The parameter.
        name: String,
        /// The template's error.
        reason: String,
    },
    /// A rendered value does not cast to the declared type.
    #[error("Failed to cast parameter \"{name}\" to {kind}: {reason}")]
    Cast {
        /// The parameter.
        name: String,
        /// The declared type.
        kind: String,
        /// Why.
        reason: String,
    },
    /// More parameters than [`MAX_PARAMETERS`].
    #[error("Too many parameters: {0}, at most {max}", max = MAX_PARAMETERS)]
    TooMany(usize),
    /// A value declared `string` is neither a string nor null.
    #[error("Value \"{value}\" must either be a string or None. Got \"{type_name}\".")]
    NotAString {
        /// The value, as JSON.
        value: String,
        /// Its Python type name.
        type_name: String,
    },
}

impl ParamsError {
    /// Whether the parameters given are wrong in themselves (the request is refused and
    /// nothing is stored), rather than failing to render (StackStorm stores a `failed`
    /// execution).
    pub fn is_invalid_value(&self) -> bool {
        matches!(self, Self::NotAString { .. } | Self::TooMany(_))
    }
}

/// One name per cycle of `deps` (a parameter that uses itself is one), sorted: StackStorm's
/// `param.py::_validate` lists the first variable of each of networkx's `simple_cycles`. Which
/// variable networkx starts a cycle from is not defined; here it is the smallest name.
fn cycle_names(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // Tarjan's strongly connected components, iteratively (parameters are few, but a
    // recursion per parameter is not needed).
    let names: Vec<&String> = deps.keys().collect();
    let position: BTreeMap<&String, usize> =
        names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edges: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            deps[*n]
                .iter()
                .filter_map(|d| position.get(d).copied())
                .collect()
        })
        .collect();
    let count = names.len();
    let mut index = vec![usize::MAX; count];
    let mut low = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut out = Vec::new();
    for root in 0..count {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, next edge to visit)
        let mut work = vec![(root, 0usize)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if let Some(&next) = edges[node].get(*edge) {
                *edge += 1;
                if index[next] == usize::MAX {
                    index[next] = next_index;
                    low[next] = next_index;
                    next_index += 1;
                    stack.push(next);
                    on_stack[next] = true;
                    work.push((next, 0));
                } else if on_stack[next] {
                    low[node] = low[node].min(index[next]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if (component.len() > 1 || edges[node].contains(&node))
                    && let Some(first) = component.iter().map(|&m| names[m]).min()
                {
                    out.push(first.clone());
                }
            }
        }
    }
    out.sort();
    out
}

/// Whether a string inside `value` has a template that does not parse.
fn any_malformed(renderer: &Renderer, value: &Value) -> bool {
    match value {
        Value::String(s) => renderer.is_malformed(s),
        Value::Array(items) => items.iter().any(|v| any_malformed(renderer, v)),
        Value::Object(map) => map.values().any(|v| any_malformed(renderer, v)),
        _ => false,
    }
}

/// The top-level variable names the templates inside `value` use.
fn variables(renderer: &Renderer, value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            out.extend(renderer.variables(s))
        }
        Value::Array(items) => items.iter().for_each(|v| variables(renderer, v, out)),
        Value::Object(map) => map.values().for_each(|v| variables(renderer, v, out)),
        _ => {}
    }
}

/// Renders every string inside `value`; a string that is exactly `{{ x }}` keeps `x`'s type.
fn render_deep(renderer: &Renderer, value: &Value, ctx: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(_) => renderer.render(value, ctx)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_deep(renderer, v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_deep(renderer, v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Casts a rendered value by the declared type, as StackStorm's `casts.py` does.
fn cast(name: &str, value: Value, kind: &str) -> Result<Value, ParamsError> {
    let fail = |reason: String| ParamsError::Cast {
        name: name.to_owned(),
        kind: kind.to_owned(),
        reason,
    };
    // `use_none`'s magic string is `null` for every typed parameter (`casts._cast_none`).
    if value.as_str() == Some(crate::filters::data::NONE_MAGIC_VALUE) {
        return Ok(Value::Null);
    }
    let Value::String(text) = &value else {
        return match (kind, &value) {
            ("string", Value::Null) => Ok(value),
            ("string", other) => Err(ParamsError::NotAString {
                value: other.to_string(),
                type_name: crate::operators::type_name(other).to_owned(),
            }),
            _ => Ok(value),
        };
    };
    Ok(match kind {
        "integer" => Value::from(
            text.trim()
                .parse::<i64>()
                .map_err(|e| fail(e.to_string()))?,
        ),
        "number" => serde_json::Number::from_f64(
            text.trim()
                .parse::<f64>()
                .map_err(|e| fail(e.to_string()))?,
        )
        .map_or(Value::Null, Value::Number),
        // `ast.literal_eval(x.capitalize())`: `true` and `TRUE` are True, "1" is 1.
        "boolean" => {
            let mut chars = text.trim().chars();
            let capitalized: String = chars
                .next()
                .map(|first| {
                    first
                        .to_uppercase()
                        .chain(chars.flat_map(char::to_lowercase))
                })
                .into_iter()
                .flatten()
                .collect();
            python_literal(&capitalized)
                .ok_or_else(|| fail(format!("{:?} is not True or False", text.trim())))?
        }
        // JSON, else a Python literal (`ast.literal_eval`): values print as Python's `str()`,
        // so `['a', True]` comes back as a list, and `True,1` as the tuple `(True, 1)`.
        "object" | "array" => match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => python_literal(text)
                .or_else(|| python_literal(&format!("({text})")).filter(|_| text.contains(',')))
                .ok_or_else(|| fail(e.to_string()))?,
        },
        _ => value,
    })
}

/// A Python literal of lists, tuples, dicts, strings, numbers, `True`, `False` and `None`
/// (what `ast.literal_eval` reads back from a printed value), as JSON.
fn python_literal(text: &str) -> Option<Value> {
    let mut parser = Literal {
        chars: text.chars().collect(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.space();
    (parser.at == parser.chars.len()).then_some(value)
}

struct Literal {
    chars: Vec<char>,
    at: usize,
}

impl Literal {
    fn space(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.space();
        let found = self.chars.get(self.at) == Some(&c);
        if found {
            self.at += 1;
        }
        found
    }

    /// Items up to `close`, separated by commas (a trailing comma allowed).
    fn items(
        &mut self,
        close: char,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        if self.eat(close) {
            return Some(());
        }
        loop {
            item(self, depth + 1)?;
            if self.eat(close) {
                return Some(());
            }
            if !self.eat(',') {
                return None;
            }
            if self.eat(close) {
                return Some(());
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > 128 {
            return None;
        }
        self.space();
        let c = *self.chars.get(self.at)?;
        match c {
            '[' | '(' => {
                self.at += 1;
                let close = if c == '[' { ']' } else { ')' };
                let mut out = Vec::new();
                self.items(close, depth, |p, d| {
                    out.push(p.value(d)?);
                    Some(())
                })?;
                Some(Value::Array(out))
            }
            '{' => {
                self.at += 1;
                let mut out = Map::new();
                self.items('}', depth, |p, d| {
                    let key = match p.value(d)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    if !p.eat(':') {
                        return None;
                    }
                    out.insert(key, p.value(d)?);
                    Some(())
                })?;
                Some(Value::Object(out))
            }
            '\'' | '"' => self.string(c).map(Value::String),
            _ => {
                let start = self.at;
                while self.chars.get(self.at).is_some_and(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_')
                }) {
                    self.at += 1;
                }
                let word: String = self.chars[start..self.at].iter().collect();
                match word.as_str() {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    _ => serde_json::from_str::<serde_json::Number>(&word)
                        .ok()
                        .map(Value::Number),
                }
            }
        }
    }

    fn string(&mut self, quote: char) -> Option<String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let c = *self.chars.get(self.at)?;
            self.at += 1;
            match c {
                c if c == quote => return Some(out),
                '\\' => {
                    let e = *self.chars.get(self.at)?;
                    self.at += 1;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'x' => {
                            let hex: String =
                                self.chars.get(self.at..self.at + 2)?.iter().collect();
                            self.at += 2;
                            out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(given: Value, declared: Value) -> Result<Value, String> {
        render_typed(given, declared).map_err(|e| e.to_string())
    }

    fn render_typed(given: Value, declared: Value) -> Result<Value, ParamsError> {
        let context = json!({"trigger": {"body": {"n": "7", "user": "ada", "tags": ["a"]}}, "st2kv": {"system": {"greeting": "Hi"}}, "rule": {"branch": "main"}});
        render_in(given, declared, context)
    }

    fn render_in(given: Value, declared: Value, context: Value) -> Result<Value, ParamsError> {
        render_parameters(
            given.as_object().unwrap(),
            declared.as_object().unwrap(),
            context.as_object().unwrap(),
            &Renderer::new(),
        )
        .map(Value::Object)
    }

    #[test]
    fn parameters_render_in_dependency_order_and_cast() {
        let out = render(
            json!({
                "message": "{{ greeting }}, {{ trigger.body.user }} on {{ rule.branch }}",
                "greeting": "{{ st2kv.system.greeting }}",
                "count": "{{ trigger.body.n }}",
                "tags": "{{ trigger.body.tags }}",
                "nested": {"who": "{{ trigger.body.user }}", "list": ["{{ trigger.body.tags }}"]},
                "flag": "TRUE"
            }),
            json!({"count": {"type": "integer"}, "flag": {"type": "boolean"}, "timeout": {"type": "integer", "default": 30}, "tags": {"type": "array"}}),
        )
        .unwrap();
        assert_eq!(out["message"], "Hi, ada on main");
        assert_eq!(
            out["count"], 7,
            "a rendered string cast to the declared integer"
        );
        assert_eq!(out["flag"], true);
        assert_eq!(out["timeout"], 30, "defaults are included");
        assert_eq!(out["tags"], json!(["a"]), "{{ var }} alone keeps its type");
        assert_eq!(out["nested"], json!({"who": "ada", "list": [["a"]]}));
    }

    #[test]
    fn errors_use_stackstorms_messages() {
        assert_eq!(
            render(json!({"a": "{{ nope }}"}), json!({})).unwrap_err(),
            "Dependency unsatisfied in variable \"nope\""
        );
        assert_eq!(
            render(json!({"a": "{{ b }}", "b": "{{ a }}"}), json!({})).unwrap_err(),
            "Cyclic dependency found in the following variables: a. Likely the variable is \
             referencing itself"
        );
        // test_param_utils.py::test_cyclic_dependency_friendly_error_message: parameters that
        // refer to themselves.
        assert_eq!(
            render(
                json!({"r3": "lolcathost", "cyclic": "{{ cyclic }}", "morecyclic": "{{ morecyclic }}", "r2": "{{ r1 }}", "r1": "some"}),
                json!({})
            )
            .unwrap_err(),
            "Cyclic dependency found in the following variables: cyclic, morecyclic. Likely \
             the variable is referencing itself"
        );
        assert!(
            render(json!({"a": "{{ trigger.body.missing }}"}), json!({}))
                .unwrap_err()
                .starts_with("Failed to render parameter \"a\"")
        );
        assert!(
            render(json!({"n": "x"}), json!({"n": {"type": "integer"}}))
                .unwrap_err()
                .contains("Failed to cast parameter \"n\" to integer")
        );
        assert_eq!(
            render(json!({"s": 5}), json!({"s": {"type": "string"}})).unwrap_err(),
            "Value \"5\" must either be a string or None. Got \"int\"."
        );
    }

    /// `st2reactor/tests/unit/test_enforce.py::test_rule_enforcement_create_rule_none_param_casting`
    /// and `test_param_utils.py::test_get_finalized_params_jinja_filters`.
    #[test]
    fn stackstorm_filters_and_use_none() {
        let declared = json!({"actionstr": {"type": "string"}});
        let none = render_with(
            json!({"actionstr": "{{ trigger.t1_p | use_none }}"}),
            declared.clone(),
            json!({"trigger": {"t1_p": null}}),
        );
        assert_eq!(none.unwrap()["actionstr"], Value::Null);
        let some = render_with(
            json!({"actionstr": "{{ trigger.t1_p | use_none }}"}),
            declared.clone(),
            json!({"trigger": {"t1_p": "somevalue"}}),
        );
        assert_eq!(some.unwrap()["actionstr"], "somevalue");
        let plain = render_with(
            json!({"actionstr": "{{trigger.t1_p}}-{{trigger.t2_p}}"}),
            declared,
            json!({"trigger": {"t1_p": null, "t2_p": "value2"}}),
        );
        assert_eq!(plain.unwrap()["actionstr"], "None-value2");
        let cmd = render_with(
            json!({"cmd": "echo {{\"1.6.0\" | version_bump_minor}}"}),
            json!({}),
            json!({}),
        );
        assert_eq!(cmd.unwrap()["cmd"], "echo 1.7.0");
        // test_get_value_from_datastore_through_render_live_params: a user without the key.
        let kv = render_with(
            json!({"a": "{{ st2kv.user.test_key }}", "b": "{{ st2kv.system.missing | int }}"}),
            json!({}),
            json!({"st2kv": {"system": {}}}),
        );
        // Untyped: the template's text, as StackStorm renders it.
        assert_eq!(kv.unwrap(), json!({"a": "", "b": "0"}));
    }

    fn render_with(given: Value, declared: Value, context: Value) -> Result<Value, String> {
        render_in(given, declared, context).map_err(|e| e.to_string())
    }

    /// `casts._cast_object`: JSON, else `ast.literal_eval` of a printed Python value
    /// (test_param_utils.py::test_get_finalized_params_with_list: `"{{r2}}"` of `["1", "2"]`).
    #[test]
    fn arrays_and_objects_read_python_literals() {
        let out = render_with(
            json!({"a": "{% if true %}{{ l }}{% endif %}", "o": "{% if true %}{{ d }}{% endif %}"}),
            json!({"a": {"type": "array"}, "o": {"type": "object"}}),
            json!({"l": ["1", "it's", true, null, 1.5], "d": {"k": [1, {"n": false}]}}),
        )
        .unwrap();
        assert_eq!(out["a"], json!(["1", "it's", true, null, 1.5]));
        assert_eq!(out["o"], json!({"k": [1, {"n": false}]}));
        assert_eq!(python_literal("('t', 1,)"), Some(json!(["t", 1])));
        assert_eq!(python_literal("[1, 2"), None);
    }

    /// test_param_utils.py::test_get_finalized_params_no_cast and
    /// ::test_get_finalized_params_cross_talk_no_cast: a template of an untyped parameter
    /// renders as text (`{{r2}}` of 1 is "1"); and ::test_get_finalized_params_with_cast_overridden:
    /// of a `string` one too, where a typed one keeps its type.
    #[test]
    fn untyped_and_string_templates_render_as_text() {
        let out = render_with(
            json!({"r1": "{{r2}}", "r2": 1, "a1": true, "a2": "{{r1}} {{a1}}", "a3": "{{action_context.api_user}}", "c": "{{a1}}"}),
            json!({"r1": {}, "r2": {}, "a1": {}, "a2": {}, "a3": {}}),
            json!({"action_context": {"api_user": "noob"}}),
        );
        assert_eq!(
            out.unwrap(),
            json!({"r1": "1", "r2": 1, "a1": true, "a2": "1 True", "a3": "noob", "c": "True"})
        );
        let out = render_with(
            json!({"r2": 1, "a1": "{{r2}}", "a2": "{{r2}}", "a3": "{{r2}}"}),
            json!({"r2": {"type": "integer"}, "a1": {"type": "boolean"}, "a2": {"type": "string"}, "a3": {"type": "integer"}}),
            json!({}),
        );
        assert_eq!(out.unwrap(), json!({"r2": 1, "a1": 1, "a2": "1", "a3": 1}));
    }

    /// test_param_utils.py::test_get_finalized_params_cross_talk_with_cast: an array parameter
    /// rendered as `True,True,True,1` is the tuple `ast.literal_eval` reads; a boolean is
    /// `ast.literal_eval(x.capitalize())`.
    #[test]
    fn casts_read_tuples_and_capitalized_booleans() {
        let out = render_with(
            json!({"r1": "{{a1}}", "r3": 1, "a1": true, "a2": "{{r1}},{{a1}},{{a3}},{{r3}}", "a3": "{{a1}}", "b": "TRUE", "f": "false"}),
            json!({"r1": {"type": "boolean"}, "r3": {}, "a1": {"type": "boolean"}, "a2": {"type": "array"}, "a3": {}, "b": {"type": "boolean"}, "f": {"type": "boolean"}}),
            json!({}),
        );
        assert_eq!(
            out.unwrap(),
            json!({"r1": true, "r3": 1, "a1": true, "a2": [true, true, true, 1], "a3": "True", "b": true, "f": false})
        );
        assert!(
            render_with(
                json!({"b": "yes"}),
                json!({"b": {"type": "boolean"}}),
                json!({})
            )
            .is_err()
        );
    }

    /// test_param_utils.py::test_get_finalized_params_non_existent_template_key_in_action_context.
    #[test]
    fn a_missing_context_key_is_named_as_jinja2_names_it() {
        let err = render_with(
            json!({"a1": "i love tests", "a2": "{{action_context.lorem_ipsum}}"}),
            json!({"a1": {"type": "string"}, "a2": {"type": "string"}}),
            json!({"action_context": {"api_user": "noob", "source_channel": "reddit"}}),
        );
        assert_eq!(
            err.unwrap_err(),
            "Failed to render parameter \"a2\": 'dict object' has no attribute 'lorem_ipsum'"
        );
    }

    /// test_param_utils.py::test_process_jinja_exception: a value whose template does not
    /// parse is taken as it is (a string, or a whole object with such a string).
    #[test]
    fn malformed_templates_are_plain_values() {
        let out = render_with(
            json!({"a1": {"test": "http://someurl?value={{a", "n": "{{ b }}"}, "a2": "x {{a", "b": 1, "c": "{{ b }}"}),
            json!({"a2": {"type": "string"}}),
            json!({}),
        );
        assert_eq!(
            out.unwrap(),
            json!({"a1": {"test": "http://someurl?value={{a", "n": "{{ b }}"}, "a2": "x {{a", "b": 1, "c": "1"})
        );
    }

    /// Parameters are bounded: a chain of 4,000 (`p1: "{{ p0 }}"`, ...) took 19 s to render,
    /// and a request body holds far more. Past [`MAX_PARAMETERS`] the request is refused
    /// (an invalid value: a 400, nothing stored).
    #[test]
    fn parameters_are_bounded() {
        let chain = |n: usize| {
            let mut given = serde_json::Map::new();
            given.insert("p0".into(), json!("x"));
            for i in 1..n {
                given.insert(format!("p{i}"), json!(format!("{{{{ p{} }}}}", i - 1)));
            }
            Value::Object(given)
        };
        let out = render_typed(chain(MAX_PARAMETERS), json!({})).unwrap();
        assert_eq!(out[format!("p{}", MAX_PARAMETERS - 1)], "x");
        let error = render_typed(chain(4_000), json!({})).unwrap_err();
        assert_eq!(error, ParamsError::TooMany(4_000));
        assert!(error.is_invalid_value());
        assert_eq!(error.to_string(), "Too many parameters: 4000, at most 256");
    }
}
