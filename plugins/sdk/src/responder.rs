//! Responders: compute the HTTP answer to a webhook delivery, on the request path.
//!
//! A rule names a responder in its webhook trigger's parameters
//! (`respond: {entry_point: reply.wasm}`); the host calls it for each verified delivery of the
//! hook, before the delivery is stored, and sends what it returns (once the delivery is
//! stored, when the answer asks for that). A Slack slash command answered with a message,
//! TwiML answered to Twilio.

use crate::Error;
use crate::bindings::responder as wit;

/// A responder. Export it with [`export_responder!`].
///
/// [`export_responder!`]: crate::export_responder
pub trait Responder {
    /// Computes the answer to one delivery. An error (or a trap, or the deadline) makes the
    /// host send the hook's fallback answer instead.
    fn respond(request: &Request) -> Result<Response, Error>;
}

/// One delivery of a webhook, as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// The hook's url (`github`, `slack/commands`).
    pub hook: String,
    /// `POST` or `GET`.
    pub method: String,
    /// The query string without `?`.
    pub query: String,
    /// The headers, names in lower case, in the order they came.
    pub headers: Vec<(String, String)>,
    /// The body bytes as received.
    pub body: Vec<u8>,
    /// The trigger payload the delivery is stored as, JSON text.
    pub payload: String,
    /// The trace tag of the event.
    pub trace_tag: String,
}

impl Request {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The form fields of an `application/x-www-form-urlencoded` body (a Slack slash command,
    /// Twilio): the first value of `name`.
    pub fn form_field(&self, name: &str) -> Option<String> {
        let body = std::str::from_utf8(&self.body).ok()?;
        body.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
    }

    /// The stored payload, parsed.
    pub fn payload(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_str(&self.payload)
            .map_err(|e| Error::invalid_input(format!("invalid payload: {e}")))
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The answer to send.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the delivery is stored as an event (default true).
    pub store: bool,
}

impl Response {
    /// A `200` answer with `body` and its content type; the delivery is stored.
    pub fn new(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.into(),
            store: true,
        }
    }

    /// A `200` JSON answer; the delivery is stored.
    pub fn json(value: &impl serde::Serialize) -> Result<Self, Error> {
        Ok(Self::new("application/json", serde_json::to_vec(value)?))
    }

    /// A `200` plain-text answer; the delivery is stored.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new("text/plain; charset=utf-8", text.into().into_bytes())
    }

    /// The same answer with another status.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same answer, with the delivery not stored (no event, no rules).
    #[must_use]
    pub fn without_storing(mut self) -> Self {
        self.store = false;
        self
    }
}

/// Entry points used by the export macros, re-exported as `crate::__private`.
pub(crate) mod __private {
    use super::*;

    /// `respond` for a [`Responder`].
    pub fn respond<R: Responder>(
        request: wit::HttpRequest,
    ) -> Result<wit::HttpResponse, wit::Error> {
        let request = Request {
            hook: request.hook,
            method: request.method,
            query: request.query,
            headers: request.headers,
            body: request.body,
            payload: request.payload,
            trace_tag: request.trace_tag,
        };
        let response = R::respond(&request)?;
        Ok(wit::HttpResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
            store: response.store,
        })
    }
}

/// Exports a type implementing [`Responder`] as the component's `respond` function.
///
/// ```ignore
/// struct Reply;
/// impl stormhook_sdk::Responder for Reply { /* ... */ }
/// stormhook_sdk::export_responder!(Reply);
/// ```
#[macro_export]
macro_rules! export_responder {
    ($responder:ty) => {
        const _: () = {
            $crate::__require_wasm!();

            struct StormhookResponder;

            impl $crate::bindings::responder::Guest for StormhookResponder {
                fn respond(
                    request: $crate::bindings::responder::HttpRequest,
                ) -> ::core::result::Result<
                    $crate::bindings::responder::HttpResponse,
                    $crate::bindings::responder::Error,
                > {
                    $crate::__private::respond::<$responder>(request)
                }
            }

            $crate::bindings::responder::export!(StormhookResponder with_types_in $crate::bindings::responder);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        let request = Request {
            hook: "slack".into(),
            method: "POST".into(),
            query: String::new(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: b"command=%2Fdeploy&text=prod+now&bad=%zz&end=%4".to_vec(),
            payload: "{}".into(),
            trace_tag: "t".into(),
        };
        assert_eq!(request.form_field("command").as_deref(), Some("/deploy"));
        assert_eq!(request.form_field("text").as_deref(), Some("prod now"));
        assert_eq!(request.form_field("bad").as_deref(), Some("%zz"));
        assert_eq!(request.form_field("end").as_deref(), Some("%4"));
        assert_eq!(request.form_field("missing"), None);
        assert_eq!(
            request.header("Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
    }
}
