//! `include_attributes` / `exclude_attributes`: the partial documents StackStorm's list (and a
//! few get) endpoints answer (`docs/st2-api.md` §0.6).
//!
//! One mechanism for every controller: each declares its [`Model`] (the fields its StackStorm
//! model has, which of them may be excluded, and which every partial answer keeps), reads the
//! request's [`Attributes`] before anything else, and applies them to the documents it built
//! in full. Projecting the finished document, after secrets are masked, is what keeps masking
//! intact whatever is asked for.
//!
//! As in StackStorm (`st2api/st2api/controllers/resource.py` `_get_all`,
//! `st2common/st2common/router.py` `_process_response`, `st2common/st2common/models/db/__init__.py`
//! `query`):
//! - both at once is a 400 (`exclude_fields and include_fields arguments are mutually
//!   exclusive...` from a list, `exclude_attributes and include_attributes...` from a get);
//! - a field the model does not have is a 400 (`Invalid or unsupported include attribute
//!   specified: <field>`, and `exclude`); so is excluding a field outside the controller's
//!   `valid_exclude_attributes` when it has such a list (executions keep `action` and `runner`
//!   because masking their secret parameters needs them);
//! - only the first segment of a dotted field counts: `include_attributes=action.ref` keeps the
//!   whole `action`, `exclude_attributes=result.stdout` drops the whole `result`.

use serde_json::Value;

use super::ApiError;
use super::paging::Params;

/// What one controller's documents are made of (StackStorm's class attributes of the same
/// names).
#[derive(Debug)]
pub(crate) struct Model {
    /// The model's fields: what the two parameters may name.
    pub(crate) fields: &'static [&'static str],
    /// `valid_exclude_attributes`: when not empty, the only fields that may be excluded.
    pub(crate) excludable: &'static [&'static str],
    /// `mandatory_include_fields_response`: kept in every answer to `include_attributes`.
    pub(crate) always: &'static [&'static str],
}

/// Which fields of a document to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attributes {
    /// The whole document (neither parameter given).
    All,
    /// Only these top-level fields.
    Only(Vec<String>),
    /// All but these top-level fields.
    Without(Vec<String>),
}

/// Whether the request lists documents or gets one: StackStorm's two checks of "both at once"
/// word it differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A list (`_get_all`).
    List,
    /// A single document (the router's response filter).
    One,
}

impl Attributes {
    /// Reads and checks the two parameters against `model`.
    pub(crate) fn from(
        params: &Params,
        model: &Model,
        endpoint: Endpoint,
    ) -> Result<Self, ApiError> {
        let include = names(params, "include_attributes");
        let exclude = names(params, "exclude_attributes");
        match (include.is_empty(), exclude.is_empty()) {
            (true, true) => Ok(Self::All),
            (false, false) => {
                let (a, b) = match endpoint {
                    Endpoint::List => ("exclude_fields", "include_fields"),
                    Endpoint::One => ("exclude_attributes", "include_attributes"),
                };
                Err(ApiError::BadRequest(format!(
                    "{a} and {b} arguments are mutually exclusive. You need to provide either one or another, but not both."
                )))
            }
            (true, false) => {
                for field in &exclude {
                    let allowed = if model.excludable.is_empty() {
                        model.fields.contains(&top(field))
                    } else {
                        model.excludable.contains(&field.as_str())
                    };
                    if !allowed {
                        return Err(ApiError::BadRequest(format!(
                            "Invalid or unsupported exclude attribute specified: {field}"
                        )));
                    }
                }
                Ok(Self::Without(
                    exclude.iter().map(|f| top(f).to_owned()).collect(),
                ))
            }
            (false, true) => {
                if let Some(field) = include.iter().find(|f| !model.fields.contains(&top(f))) {
                    return Err(ApiError::BadRequest(format!(
                        "Invalid or unsupported include attribute specified: {field}"
                    )));
                }
                let mut keep: Vec<String> = include.iter().map(|f| top(f).to_owned()).collect();
                keep.extend(model.always.iter().map(|f| (*f).to_owned()));
                Ok(Self::Only(keep))
            }
        }
    }

    /// The fields of `doc` to answer.
    pub(crate) fn apply(&self, mut doc: Value) -> Value {
        if let Value::Object(map) = &mut doc {
            match self {
                Self::All => {}
                Self::Only(keep) => map.retain(|k, _| keep.contains(k)),
                Self::Without(drop) => map.retain(|k, _| !drop.contains(k)),
            }
        }
        doc
    }

    /// [`Attributes::apply`] to each document of a list.
    pub(crate) fn apply_all(&self, docs: Vec<Value>) -> Vec<Value> {
        if *self == Self::All {
            return docs;
        }
        docs.into_iter().map(|d| self.apply(d)).collect()
    }
}

/// The comma-separated names of a parameter (empty items, and an empty value, are nothing).
fn names(params: &Params, name: &str) -> Vec<String> {
    params
        .get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The top-level field a (possibly dotted) field name is in.
fn top(field: &str) -> &str {
    field.split('.').next().unwrap_or(field)
}

/// Rules (`RuleDB`; a content pack resource: `id` and `ref` are always kept).
pub(crate) const RULES: Model = Model {
    fields: &[
        "id",
        "name",
        "ref",
        "uid",
        "description",
        "pack",
        "type",
        "trigger",
        "criteria",
        "action",
        "context",
        "enabled",
        "tags",
        "metadata_file",
    ],
    excludable: &[],
    always: &["id", "ref"],
};

/// Trigger types (`TriggerTypeDB`).
pub(crate) const TRIGGER_TYPES: Model = Model {
    fields: &[
        "id",
        "ref",
        "uid",
        "name",
        "pack",
        "description",
        "payload_schema",
        "parameters_schema",
        "tags",
        "metadata_file",
    ],
    excludable: &[],
    always: &["id", "ref"],
};

/// Trigger instances (`TriggerInstanceDB`).
pub(crate) const TRIGGER_INSTANCES: Model = Model {
    fields: &["id", "trigger", "payload", "occurrence_time", "status"],
    excludable: &[],
    always: &["id"],
};

/// Rule enforcements (`RuleEnforcementDB`).
pub(crate) const ENFORCEMENTS: Model = Model {
    fields: &[
        "id",
        "trigger_instance_id",
        "execution_id",
        "failure_reason",
        "rule",
        "enforced_at",
        "status",
        "tags",
    ],
    excludable: &[],
    always: &["id"],
};

/// Traces (`TraceDB`).
pub(crate) const TRACES: Model = Model {
    fields: &[
        "id",
        "uid",
        "trace_tag",
        "trigger_instances",
        "rules",
        "action_executions",
        "start_timestamp",
    ],
    excludable: &[],
    always: &["id"],
};

/// Executions (`ActionExecutionDB`): only these three may be excluded, so that secret
/// parameters can always be masked.
pub(crate) const EXECUTIONS: Model = Model {
    fields: &[
        "id",
        "trigger",
        "trigger_type",
        "trigger_instance",
        "rule",
        "action",
        "runner",
        "liveaction",
        "workflow_execution",
        "task_execution",
        "status",
        "start_timestamp",
        "end_timestamp",
        "parameters",
        "result",
        "result_size",
        "context",
        "parent",
        "children",
        "log",
        "delay",
        "web_url",
    ],
    excludable: &["result", "trigger_instance", "status"],
    always: &["id"],
};

/// Actions (`ActionDB`; a content pack resource).
pub(crate) const ACTIONS: Model = Model {
    fields: &[
        "id",
        "name",
        "ref",
        "uid",
        "description",
        "enabled",
        "entry_point",
        "pack",
        "runner_type",
        "parameters",
        "output_schema",
        "notify",
        "tags",
        "metadata_file",
    ],
    excludable: &["parameters", "notify"],
    always: &["id", "ref"],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn message(result: Result<Attributes, ApiError>) -> String {
        match result {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn both_at_once_is_refused_with_the_endpoints_wording() {
        let both = params(&[("include_attributes", "id"), ("exclude_attributes", "id")]);
        assert!(
            message(Attributes::from(&both, &RULES, Endpoint::List))
                .starts_with("exclude_fields and include_fields arguments are mutually exclusive.")
        );
        assert!(
            message(Attributes::from(&both, &EXECUTIONS, Endpoint::One)).starts_with(
                "exclude_attributes and include_attributes arguments are mutually exclusive."
            )
        );
    }

    #[test]
    fn include_keeps_the_mandatory_fields_and_exclude_respects_the_allowed_list() {
        let only = Attributes::from(
            &params(&[("include_attributes", "criteria,action.ref")]),
            &RULES,
            Endpoint::List,
        )
        .unwrap();
        let doc = serde_json::json!({"id": "1", "ref": "p.r", "name": "r", "criteria": {}, "action": {"ref": "a"}});
        assert_eq!(
            only.apply(doc),
            serde_json::json!({"id": "1", "ref": "p.r", "criteria": {}, "action": {"ref": "a"}})
        );
        assert_eq!(
            message(Attributes::from(
                &params(&[("exclude_attributes", "action")]),
                &EXECUTIONS,
                Endpoint::List
            )),
            "Invalid or unsupported exclude attribute specified: action"
        );
        assert_eq!(
            message(Attributes::from(
                &params(&[("include_attributes", "invalid_field")]),
                &TRACES,
                Endpoint::List
            )),
            "Invalid or unsupported include attribute specified: invalid_field"
        );
        assert_eq!(
            Attributes::from(
                &params(&[("include_attributes", "")]),
                &RULES,
                Endpoint::List
            )
            .unwrap(),
            Attributes::All
        );
    }
}
