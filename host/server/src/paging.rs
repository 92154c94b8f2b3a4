//! Query parameters shared by list endpoints: `limit`, `offset`, and typed lookups, with
//! StackStorm's messages (`docs/st2-api.md` §0.2 and §0.6).

use std::collections::HashMap;

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use stormhook_storage::ids;

use super::ApiError;

/// Raw query parameters (undeclared ones are ignored, as StackStorm ignores them).
pub(crate) type Params = HashMap<String, String>;

/// A page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paging {
    /// `None` is "all" (`limit=-1`).
    pub(crate) limit: Option<u64>,
    pub(crate) offset: u64,
}

impl Paging {
    /// Reads `limit` (default `default_limit`) and `offset`, with StackStorm's message for an
    /// offset past 32 bits (`st2api/st2api/controllers/resource.py` `_get_all`).
    pub(crate) fn from(params: &Params, default_limit: u64) -> Result<Self, ApiError> {
        Self::read(params, default_limit, "32-bit int")
    }

    /// [`Paging::from`] for API keys, whose controller words the offset message its own way
    /// (`st2api/st2api/controllers/v1/auth.py`: "32 bit int").
    pub(crate) fn for_api_keys(params: &Params, default_limit: u64) -> Result<Self, ApiError> {
        Self::read(params, default_limit, "32 bit int")
    }

    /// Reads `limit` (default `default_limit`) and `offset`; `offset_words` ends the message
    /// for an offset past 32 bits.
    fn read(params: &Params, default_limit: u64, offset_words: &str) -> Result<Self, ApiError> {
        let limit = match int(params, "limit")? {
            None => Some(default_limit),
            Some(-1) => None,
            Some(0) => {
                return Err(ApiError::BadRequest(
                    "Limit, \"0\" specified, must be a positive number or -1 for full result set."
                        .into(),
                ));
            }
            Some(n) if n < -1 => {
                return Err(ApiError::BadRequest(format!(
                    "Limit, \"{n}\" specified, must be a positive number."
                )));
            }
            Some(n) => Some(n as u64),
        };
        let offset = match offset(params, offset_words)? {
            None => 0,
            // StackStorm slices its query with a negative offset and fails with a 500; a 400
            // says what is wrong.
            Some(n) if n < 0 => {
                return Err(ApiError::BadRequest(format!(
                    "Offset, \"{n}\" specified, must be between 0 and 2147483647."
                )));
            }
            Some(n) => n as u64,
        };
        Ok(Self { limit, offset })
    }
}

/// The `offset` parameter: an integer, below 2^31 (`ResourceController._get_all`'s message,
/// with the number as Python's `int` writes it, for any number of digits).
fn offset(params: &Params, offset_words: &str) -> Result<Option<i64>, ApiError> {
    let Some(raw) = params.get("offset") else {
        return Ok(None);
    };
    let text = raw.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(
            "Parameter \"offset\" is not of type integer".into(),
        ));
    }
    match text.parse::<i64>() {
        Ok(n) if n < (1 << 31) => Ok(Some(n)),
        _ if text.starts_with('-') => Err(ApiError::BadRequest(format!(
            "Offset, \"-{}\" specified, must be between 0 and 2147483647.",
            digits.trim_start_matches('0')
        ))),
        _ => {
            let trimmed = digits.trim_start_matches('0');
            Err(ApiError::BadRequest(format!(
                "Offset \"{trimmed}\" specified is more than {offset_words}"
            )))
        }
    }
}

/// An integer query parameter.
pub(crate) fn int(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("Parameter \"{name}\" is not of type integer"))
            })
        })
        .transpose()
}

/// A timestamp query parameter in the forms StackStorm accepts, normalised to its rendering.
pub(crate) fn time_param(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    params
        .get(name)
        .map(|v| {
            ids::parse_time(v).map(ids::format_time).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Parameter \"{name}\" is not a valid timestamp: \"{v}\""
                ))
            })
        })
        .transpose()
}

/// A boolean query parameter (`true/1/yes/y`, `false/0/no/n`).
pub(crate) fn boolean(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    params
        .get(name)
        .map(|v| match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" => Ok(true),
            "false" | "0" | "no" | "n" => Ok(false),
            _ => Err(ApiError::BadRequest(format!(
                "Parameter \"{name}\" is not of type boolean"
            ))),
        })
        .transpose()
}

/// A JSON list with `X-Total-Count` and (when limited) `X-Limit`.
pub(crate) fn list_response(items: Vec<serde_json::Value>, total: u64, paging: Paging) -> Response {
    let mut response = axum::Json(items).into_response();
    let headers = response.headers_mut();
    headers.insert("X-Total-Count", HeaderValue::from(total));
    if let Some(limit) = paging.limit {
        headers.insert("X-Limit", HeaderValue::from(limit));
    }
    response
}
