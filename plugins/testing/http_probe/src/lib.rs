//! `http_probe`: a test fixture action that makes HTTP requests with the SDK's client.
//!
//! Parameters `{"method": "GET" | "POST" | ..., "url": "...", "body": <JSON or null>,
//! "headers": {"name": "value"}, "count": n}` send the same request `count` times (default 1)
//! and return `{"status": <last status>, "body": <last body as text>, "statuses": [...]}`.
//! A string `body` is sent as it is (text); any other non-null `body` is sent as JSON with
//! `content-type: application/json`. `"body_bytes": n` sends `n` bytes of `a` instead (for
//! request caps). `"max_response_bytes": n` bounds how much of each response is read. Any
//! failure is `error::upstream` with the client's message, for example
//! `HTTP request failed: HTTP request denied`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stormhook_sdk::http::{Method, Request};
use stormhook_sdk::{Action, Context, Error, log};

/// The parameters.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// The method (default `GET`).
    #[serde(default = "get")]
    pub method: String,
    /// The URL.
    pub url: String,
    /// The body: text for a string, JSON for anything else, none for null.
    #[serde(default)]
    pub body: Value,
    /// A body of this many `a` bytes, instead of `body`.
    pub body_bytes: Option<usize>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How many times to send the request (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// The client's response-body bound.
    pub max_response_bytes: Option<u64>,
}

fn get() -> String {
    "GET".to_owned()
}

fn one() -> u32 {
    1
}

/// The result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The last response's status.
    pub status: u16,
    /// The last response's body, as text (invalid UTF-8 replaced).
    pub body: String,
    /// Every response's status, in order.
    pub statuses: Vec<u16>,
}

/// The action.
pub struct HttpProbe;

impl Action for HttpProbe {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, _ctx: &Context) -> Result<Output, Error> {
        let mut output = Output {
            status: 0,
            body: String::new(),
            statuses: Vec::new(),
        };
        for _ in 0..params.count {
            let response = request(&params)?
                .send()
                .map_err(|error| Error::upstream(error.to_string()))?;
            log::info_with(
                "http_probe response",
                &[("status", &response.status().to_string())],
            );
            output.status = response.status();
            output.statuses.push(response.status());
            output.body = String::from_utf8_lossy(response.bytes()).into_owned();
        }
        Ok(output)
    }
}

fn request(params: &Params) -> Result<Request, Error> {
    let mut request = Request::new(Method::parse(&params.method), &params.url);
    for (name, value) in &params.headers {
        request = request.header(name, value);
    }
    if let Some(limit) = params.max_response_bytes {
        request = request.max_response_bytes(limit);
    }
    if let Some(bytes) = params.body_bytes {
        return Ok(request.body(vec![b'a'; bytes]));
    }
    Ok(match &params.body {
        Value::Null => request,
        Value::String(text) => request.body(text.as_bytes()),
        other => request
            .json(other)
            .map_err(|error| Error::upstream(error.to_string()))?,
    })
}

stormhook_sdk::export_action!(HttpProbe);
