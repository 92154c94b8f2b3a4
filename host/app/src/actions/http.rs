//! The `http-request` runner: `core.http` sends one HTTP request.
//!
//! Result `{status_code, body, parsed, headers}` (`shared/docs/st2-api.md` §4.4): `body` is the
//! decoded JSON when the response says `application/json` (and `parsed` is true), otherwise the
//! text. HTTP 200–206 is `succeeded`, any other status `failed`; the deadline (`timeout`
//! seconds, default 60) is `timeout` with `{"error"}`. Redirects are not followed unless
//! `allow_redirects`. The request carries `User-Agent: st2/v<version>` and
//! `X-Stanley-Action: <action name>`, as StackStorm's runner sends.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::executions::Outcome;

/// Largest response body kept.
const MAX_BODY_BYTES: usize = 4 << 20;

/// Sends the request `params` describe on behalf of action `action_name`.
pub async fn run(params: &Map<String, Value>, action_name: &str) -> Outcome {
    match send(params, action_name).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_timeout() => Outcome {
            status: "timeout",
            result: json!({"error": format!("Request timed out: {e}")}),
        },
        Err(e) => Outcome::failed(json!({"error": error_chain(&e)})),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn send(params: &Map<String, Value>, action_name: &str) -> Result<Outcome, reqwest::Error> {
    let Some(url) = params.get("url").and_then(Value::as_str) else {
        return Ok(Outcome::failed(
            json!({"error": "'url' is a required property"}),
        ));
    };
    let body = params.get("body").filter(|b| !b.is_null()).map(text);
    let method = params
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned());
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Ok(Outcome::failed(
            json!({"error": format!("invalid method {method:?}")}),
        ));
    };
    let timeout = params
        .get("timeout")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(60.0);
    let redirects = if params.get("allow_redirects").and_then(Value::as_bool) == Some(true) {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    let verify = params.get("verify_ssl_cert").and_then(Value::as_bool) != Some(false);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(timeout))
        .redirect(redirects)
        .danger_accept_invalid_certs(!verify)
        .user_agent(format!("st2/v{}", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut request = client
        .request(method, url)
        .header("X-Stanley-Action", action_name);
    if let Some(headers) = params.get("headers").and_then(Value::as_object) {
        for (k, v) in headers {
            request = request.header(k.as_str(), text(v));
        }
    }
    if let Some(query) = params.get("params").and_then(Value::as_object) {
        let pairs: Vec<(String, String)> =
            query.iter().map(|(k, v)| (k.clone(), text(v))).collect();
        request = request.query(&pairs);
    }
    if let Some(cookies) = params.get("cookies").and_then(Value::as_object)
        && !cookies.is_empty()
    {
        let header: Vec<String> = cookies
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        request = request.header("Cookie", header.join("; "));
    }
    if let Some(user) = params.get("username").and_then(Value::as_str) {
        request = request.basic_auth(user, params.get("password").and_then(Value::as_str));
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let mut response = request.send().await?;
    let status = response.status().as_u16();
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        headers.insert(
            name.as_str().to_owned(),
            json!(String::from_utf8_lossy(value.as_bytes())),
        );
    }
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    let mut raw = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(raw.len());
        raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (body, parsed) = match is_json.then(|| serde_json::from_str::<Value>(&text)) {
        Some(Ok(v)) => (v, true),
        _ => (Value::String(text), false),
    };
    Ok(Outcome {
        status: if (200..=206).contains(&status) {
            "succeeded"
        } else {
            "failed"
        },
        result: json!({"status_code": status, "body": body, "parsed": parsed, "headers": headers}),
    })
}
