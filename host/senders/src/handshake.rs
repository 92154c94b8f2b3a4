//! The synchronous answers some senders need before (or instead of) a delivery.
//!
//! | handshake | recognised by | answer |
//! | --- | --- | --- |
//! | Slack | JSON body `{"type": "url_verification", "challenge": ...}` | 200 `text/plain`, the challenge (the first form Slack's `url_verification` documentation gives) |
//! | Meta | `GET` with `hub.mode=subscribe` and `hub.challenge` in the query | 200 `text/plain`, the challenge, when `hub.verify_token` is one of the verify tokens |
//! | Microsoft Graph | `validationToken` in the query (any method) | 200 `text/plain`, the token URL-decoded |
//! | Zoom | JSON body `{"event": "endpoint.url_validation", "payload": {"plainToken": ...}}` | 200 `application/json`, `{"plainToken": ..., "encryptedToken": <hex HMAC-SHA256 of plainToken with the first secret>}` |
//! | Twitch | `Twitch-Eventsub-Message-Type: webhook_callback_verification`, JSON body `{"challenge": ...}` | 200 `text/plain`, the challenge |
//! | Dropbox | `GET` with `challenge` in the query | 200 `text/plain`, the challenge |
//!
//! Slack, Zoom and Twitch sign their handshakes: when the hook has a `verify` policy the
//! request is verified first (a refusal is `Some(Err(..))`); a hook with only `handshake:`
//! answers without a signature check. Every echo is `text/plain` with
//! `X-Content-Type-Options: nosniff` (Dropbox asks for both, to avoid a reflected XSS; the
//! other echoes get them for the same reason).

use serde_json::Value;

use crate::util::{contains, header_str, query_param, token_in};
use crate::{Delivery, HandshakeKind, HookPolicy, Refusal, Secrets};

/// An HTTP answer computed for a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// More headers (Dropbox wants `X-Content-Type-Options: nosniff`).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The largest body looked at for a handshake: real ones are a few hundred bytes.
const MAX_HANDSHAKE_BODY: usize = 64 * 1024;

/// The answer to `delivery` when it is the policy's handshake, `None` when it is an ordinary
/// delivery. Handshakes the provider signs (Slack, Zoom, Twitch) are verified first (a refusal
/// is `Some(Err(..))`); Meta's GET checks `hub.verify_token`; Graph's `validationToken` and
/// Dropbox's GET `challenge` are echoed as their providers specify (plain text, escaped as
/// required).
pub fn handshake(
    policy: &HookPolicy,
    delivery: &Delivery<'_>,
    secrets: &Secrets,
) -> Option<Result<Answer, Refusal>> {
    match policy.handshake? {
        HandshakeKind::Slack => slack(policy, delivery, secrets),
        HandshakeKind::Meta => meta(delivery, secrets),
        HandshakeKind::Graph => graph(delivery),
        HandshakeKind::Zoom => zoom(policy, delivery, secrets),
        HandshakeKind::Twitch => twitch(policy, delivery, secrets),
        HandshakeKind::Dropbox => dropbox(delivery),
    }
}

/// A `text/plain` echo.
fn echo(text: String) -> Answer {
    Answer {
        status: 200,
        content_type: "text/plain",
        headers: vec![("X-Content-Type-Options", "nosniff".to_owned())],
        body: text.into_bytes(),
    }
}

/// The policy's signature check, when it has one.
fn verified(
    policy: &HookPolicy,
    delivery: &Delivery<'_>,
    secrets: &Secrets,
) -> Result<(), Refusal> {
    match &policy.verify {
        Some(verify) => crate::verify(verify, delivery, secrets),
        None => Ok(()),
    }
}

/// The body as a JSON object, when it is a small one containing `marker`.
fn small_json(delivery: &Delivery<'_>, marker: &[u8]) -> Option<serde_json::Map<String, Value>> {
    if delivery.body.len() > MAX_HANDSHAKE_BODY || !contains(delivery.body, marker) {
        return None;
    }
    match serde_json::from_slice(delivery.body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn slack(
    policy: &HookPolicy,
    delivery: &Delivery<'_>,
    secrets: &Secrets,
) -> Option<Result<Answer, Refusal>> {
    let body = small_json(delivery, b"url_verification")?;
    if body.get("type").and_then(Value::as_str) != Some("url_verification") {
        return None;
    }
    Some(verified(policy, delivery, secrets).and_then(|()| {
        body.get("challenge")
            .and_then(Value::as_str)
            .map(|challenge| echo(challenge.to_owned()))
            .ok_or_else(|| Refusal::BadBody("a `challenge` string".to_owned()))
    }))
}

fn meta(delivery: &Delivery<'_>, secrets: &Secrets) -> Option<Result<Answer, Refusal>> {
    if !delivery.method.eq_ignore_ascii_case("GET")
        || query_param(delivery.url, "hub.mode").as_deref() != Some("subscribe")
    {
        return None;
    }
    let challenge = query_param(delivery.url, "hub.challenge")?;
    let tokens: Vec<&[u8]> = secrets
        .verify_token
        .iter()
        .map(Vec::as_slice)
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.is_empty() {
        return Some(Err(Refusal::NoSecret));
    }
    let presented = query_param(delivery.url, "hub.verify_token").unwrap_or_default();
    Some(if token_in(presented.as_bytes(), &tokens) {
        Ok(echo(challenge))
    } else {
        Err(Refusal::BadToken("hub.verify_token".to_owned()))
    })
}

fn graph(delivery: &Delivery<'_>) -> Option<Result<Answer, Refusal>> {
    query_param(delivery.url, "validationToken").map(|token| Ok(echo(token)))
}

fn zoom(
    policy: &HookPolicy,
    delivery: &Delivery<'_>,
    secrets: &Secrets,
) -> Option<Result<Answer, Refusal>> {
    let body = small_json(delivery, b"endpoint.url_validation")?;
    if body.get("event").and_then(Value::as_str) != Some("endpoint.url_validation") {
        return None;
    }
    Some(verified(policy, delivery, secrets).and_then(|()| {
        let plain = body
            .get("payload")
            .and_then(|p| p.get("plainToken"))
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::BadBody("a `payload.plainToken` string".to_owned()))?;
        // The secret that verified this request (during a rotation, the one Zoom still
        // uses), never another: a rule naming someone else's secret beside its own must not
        // get that secret's HMAC of a text of its choosing.
        let key = secrets
            .signing
            .iter()
            .filter(|s| !s.is_empty())
            .find(|key| match &policy.verify {
                Some(verify) => {
                    let one = Secrets {
                        signing: vec![key.to_vec()],
                        verify_token: Vec::new(),
                    };
                    crate::verify(verify, delivery, &one).is_ok()
                }
                None => false,
            })
            .ok_or(Refusal::NoSecret)?;
        let encrypted =
            crate::verify::hex_hmac_sha256(key, plain.as_bytes()).ok_or(Refusal::NoSecret)?;
        let answer = serde_json::json!({"plainToken": plain, "encryptedToken": encrypted});
        Ok(Answer {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: answer.to_string().into_bytes(),
        })
    }))
}

fn twitch(
    policy: &HookPolicy,
    delivery: &Delivery<'_>,
    secrets: &Secrets,
) -> Option<Result<Answer, Refusal>> {
    let kind = header_str(delivery, "Twitch-Eventsub-Message-Type")?;
    if !kind.eq_ignore_ascii_case("webhook_callback_verification") {
        return None;
    }
    Some(verified(policy, delivery, secrets).and_then(|()| {
        small_json(delivery, b"challenge")
            .and_then(|body| body.get("challenge")?.as_str().map(str::to_owned))
            .map(echo)
            .ok_or_else(|| Refusal::BadBody("JSON with a `challenge` string".to_owned()))
    }))
}

fn dropbox(delivery: &Delivery<'_>) -> Option<Result<Answer, Refusal>> {
    if !delivery.method.eq_ignore_ascii_case("GET") {
        return None;
    }
    query_param(delivery.url, "challenge").map(|challenge| Ok(echo(challenge)))
}

#[cfg(test)]
mod tests;
