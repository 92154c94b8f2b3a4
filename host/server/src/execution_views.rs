//! Views of executions besides their documents (`docs/st2-api.md` §4.2): `GET
//! /executions/views/filters` (st2api's `execution_views.py`), the distinct values of each
//! execution filter for st2web's history drop-downs, and `GET /executions/{id}/result`
//! (`ActionExecutionRawResultController`), the raw result as a JSON text or file.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use stormhook_storage::ExecutionQuery;

use super::paging::{Params, boolean};
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

/// `GET /executions/{id}/result[?download=1][&compress=1][&pretty_format=1]`: the result as
/// stored (secrets unmasked, as StackStorm serves it), compact JSON or indented by two spaces,
/// `Content-Type: text/json`; `download` names it `execution_<id>_result.json` in
/// `Content-Disposition`; `compress` sends it gzipped (`application/x-gzip`,
/// `Content-Encoding: gzip`, the file name ending `.gz`).
pub(super) async fn raw_result(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let download = boolean(&params, "download")?.unwrap_or(false);
    let compress = boolean(&params, "compress")?.unwrap_or(false);
    let pretty = boolean(&params, "pretty_format")?.unwrap_or(false);
    let execution = state
        .store
        .execution(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Execution with id {id} not found")))?;
    let result = execution
        .document
        .get("result")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let text = if pretty {
        serde_json::to_vec_pretty(&result)
    } else {
        serde_json::to_vec(&result)
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut content_type = "text/json";
    let body = if compress {
        content_type = "application/x-gzip";
        gzip_stored(&text)
    } else {
        text
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if compress {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if download {
        let suffix = if compress { ".gz" } else { "" };
        if let Ok(value) = HeaderValue::from_str(&format!(
            "attachment; filename=execution_{id}_result.json{suffix}"
        )) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

/// `data` as a gzip member (RFC 1952) of stored, uncompressed deflate blocks (RFC 1951 §3.2.4):
/// any gzip reader opens it, and no compression library is needed.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 0xFFFF;
    let mut out = Vec::with_capacity(data.len() + data.len() / BLOCK * 5 + 32);
    // Magic, deflate, no flags, no time, no extra flags, unknown OS.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let mut blocks = data.chunks(BLOCK).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        let last = u8::from(blocks.peek().is_none());
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    // ISIZE: the length modulo 2^32.
    out.extend_from_slice(&((data.len() & 0xFFFF_FFFF) as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected, as gzip checks it).
fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gzip member is what `gzip.decompress` reads: checked against the known CRC of
    /// "123456789" and the layout of a stored block.
    #[test]
    fn gzip_stored_is_a_valid_member() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let out = gzip_stored(b"abc");
        assert_eq!(&out[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(&out[10..15], &[1, 3, 0, 0xFC, 0xFF]);
        assert_eq!(&out[15..18], b"abc");
        assert_eq!(&out[18..22], &crc32(b"abc").to_le_bytes());
        assert_eq!(&out[22..], &3u32.to_le_bytes());
        let big = vec![7u8; 70_000];
        let out = gzip_stored(&big);
        assert_eq!(out.len(), 10 + 5 + 65_535 + 5 + (70_000 - 65_535) + 8);
        assert_eq!(out[10], 0, "first block is not the last");
    }
}
