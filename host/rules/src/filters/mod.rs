//! StackStorm's own Jinja filters (`st2common/st2common/expressions/functions/`, registered by
//! `st2common/util/jinja.py::get_filters`), with their Python semantics. The specification,
//! with the upstream test vectors the unit tests here replay, is `docs/st2-jinja-filters.md`.
//!
//! | module | filters |
//! |---|---|
//! | [`data`] | `from_json_string`, `from_yaml_string`, `json_escape`, `jsonpath_query`, `to_complex`, `to_json_string`, `to_yaml_string`, `use_none` |
//! | [`regex`] | `regex_match`, `regex_replace`, `regex_search`, `regex_substring` |
//! | [`time`] | `to_human_time_from_seconds` |
//! | [`version`] | `version_compare`, `version_more_than`, `version_less_than`, `version_equal`, `version_match`, `version_bump_major`, `version_bump_minor`, `version_bump_patch`, `version_strip_patch` |
//! | [`path`] | `basename`, `dirname` |
//!
//! `decrypt_kv` needs the datastore's key and is added by [`crate::template::Renderer`].
//!
//! Every filter is registered through the sandbox's guarded path: arguments are walked and
//! sized before the call, the result after it. Filters whose output can outgrow their input
//! (`to_json_string` with an indent, `to_yaml_string`, `regex_replace`, `json_escape`) write
//! into buffers capped at [`crate::sandbox::MAX_VALUE_BYTES`]; regexes compile with the
//! `regex` operator's limits and matching costs fuel by the time it takes.

pub(crate) mod data;
pub(crate) mod path;
pub(crate) mod regex;
pub(crate) mod time;
pub(crate) mod version;

use minijinja::{Environment, Error, ErrorKind, Value};

use crate::sandbox::{self, no_check};

/// Registers every filter of this module.
pub(crate) fn register(env: &mut Environment<'static>) {
    macro_rules! f {
        ($function:expr) => {
            Value::from_function($function)
        };
    }
    let filters: Vec<(&'static str, Value)> = vec![
        ("from_json_string", f!(data::from_json_string)),
        ("from_yaml_string", f!(data::from_yaml_string)),
        ("json_escape", f!(data::json_escape)),
        ("jsonpath_query", f!(data::jsonpath_query)),
        ("to_complex", f!(data::to_complex)),
        ("to_json_string", f!(data::to_json_string)),
        ("to_yaml_string", f!(data::to_yaml_string)),
        ("use_none", f!(data::use_none)),
        ("regex_match", f!(regex::regex_match)),
        ("regex_replace", f!(regex::regex_replace)),
        ("regex_search", f!(regex::regex_search)),
        ("regex_substring", f!(regex::regex_substring)),
        (
            "to_human_time_from_seconds",
            f!(time::to_human_time_from_seconds),
        ),
        ("version_compare", f!(version::version_compare)),
        ("version_more_than", f!(version::version_more_than)),
        ("version_less_than", f!(version::version_less_than)),
        ("version_equal", f!(version::version_equal)),
        ("version_match", f!(version::version_match)),
        ("version_bump_major", f!(version::version_bump_major)),
        ("version_bump_minor", f!(version::version_bump_minor)),
        ("version_bump_patch", f!(version::version_bump_patch)),
        ("version_strip_patch", f!(version::version_strip_patch)),
        ("basename", f!(path::basename)),
        ("dirname", f!(path::dirname)),
    ];
    for (name, filter) in filters {
        sandbox::add_filter(env, name, filter, no_check);
    }
}

/// An error with StackStorm's (Python's) exception text.
pub(crate) fn error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value as Json;

    use crate::template::Renderer;

    /// Renders `template` as text (Jinja2's `env.from_string(template).render(ctx)`).
    pub(crate) fn render(template: &str, ctx: Json) -> Result<String, String> {
        Renderer::new().render_text(template, &ctx)
    }

    /// Renders, expecting success.
    pub(crate) fn ok(template: &str, ctx: Json) -> String {
        render(template, ctx.clone()).unwrap_or_else(|e| panic!("{template} with {ctx}: {e}"))
    }
}
