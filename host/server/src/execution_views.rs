//! `GET /executions/views/filters` (`docs/st2-api.md` §4.2; st2api's `execution_views.py`):
//! the distinct values of each execution filter, for st2web's history drop-downs.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Map, Value};
use stormhook_storage::ExecutionQuery;

use super::paging::Params;
use super::{ApiError, AppState};

/// How many of the newest executions the values are gathered from (StackStorm reads them
/// all; here a view is bounded).
pub(crate) const MAX_SCANNED: u64 = 10_000;

/// Executions read per store query.
const PAGE: u64 = 500;

/// `SUPPORTED_FILTERS` less `IGNORE_FILTERS`: the filter and the document field it reads, and
/// whether `null` is one of its values (`FILTERS_WITH_VALID_NULL_VALUES`).
const FILTERS: [(&str, &str, bool); 7] = [
    ("action", "/action/ref", false),
    ("rule", "/rule/name", true),
    ("runner", "/runner/name", false),
    ("status", "/status", false),
    ("trigger", "/trigger/name", true),
    ("trigger_type", "/trigger_type/name", true),
    ("user", "/context/user", false),
];

/// `FiltersController.get_all`: every filter, or those whose name is in `types` (StackStorm
/// tests `name in types` on the string, so a name anywhere in it counts), each with its
/// distinct values among the newest [`MAX_SCANNED`] executions.
pub(super) async fn filters(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let types = params.get("types").filter(|t| !t.is_empty());
    let wanted: Vec<_> = FILTERS
        .iter()
        .filter(|(name, _, _)| types.is_none_or(|t| t.contains(name)))
        .collect();
    let mut values: BTreeMap<&str, BTreeSet<Option<String>>> = BTreeMap::new();
    let mut offset = 0;
    while offset < MAX_SCANNED {
        let page = state
            .store
            .list_executions(&ExecutionQuery {
                limit: Some(PAGE),
                offset,
                ..Default::default()
            })
            .await?;
        for execution in &page.items {
            for (name, pointer, null_allowed) in &wanted {
                let value = field(&execution.document, pointer);
                if value.is_some() || *null_allowed {
                    values.entry(name).or_default().insert(value);
                }
            }
        }
        offset += PAGE;
        if offset >= page.total {
            break;
        }
    }
    let out: Map<String, Value> = wanted
        .iter()
        .map(|(name, _, _)| {
            let list = values
                .remove(name)
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.map_or(Value::Null, Value::String))
                .collect();
            ((*name).to_owned(), Value::Array(list))
        })
        .collect();
    Ok(Json(Value::Object(out)))
}

/// The field's text; a trigger type stored as its ref alone gives the name after the pack.
fn field(document: &Value, pointer: &str) -> Option<String> {
    if let Some(text) = document.pointer(pointer).and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    if pointer == "/trigger_type/name" {
        let reference = document.pointer("/trigger_type/ref")?.as_str()?;
        return reference.split_once('.').map(|(_, name)| name.to_owned());
    }
    None
}
