//! What real webhook senders need, as pure functions: how a hook's sender is verified (the
//! `verify` parameter of a `core.st2.webhook` trigger), the handshakes some senders run before
//! they deliver, and the delivery id that makes a retried delivery recognisable.
//!
//! Architecture invariant: this crate does no IO. The server reads the request and resolves the
//! secrets a policy names (datastore keys, pack config values); this crate only computes.
//!
//! # Layout
//!
//! - [`policy`]: the hook's policy, parsed from the trigger parameters ([`HookPolicy::parse`]).
//! - [`verify`](mod@verify): the presets' signature checks ([`verify()`]); every comparison of
//!   a secret or a signature is constant time (`subtle::ConstantTimeEq`, on decoded signature
//!   bytes, and on SHA-256 digests of tokens compared as they are). Standard Webhooks'
//!   asymmetric `v1a` signatures (ed25519) are checked with `ring`.
//! - [`handshake`](mod@handshake): the synchronous answers to Slack, Meta, Microsoft Graph,
//!   Zoom, Twitch and Dropbox ([`handshake()`]).
//! - [`delivery_id`]: the sender's delivery id, for replay protection ([`delivery_id()`]).

pub mod handshake;
pub mod policy;
mod util;
pub mod verify;

pub use handshake::{Answer, handshake};
pub use policy::{
    Accept, Algorithm, Encoding, HandshakeKind, HmacSpec, HookPolicy, PRESET_NAMES, Preset, Replay,
    Respond, SecretRef, Verify,
};
pub use verify::{MAX_DELIVERY_ID, Refusal, delivery_id, verify};

/// One delivery as it arrived, for the checks: nothing here is parsed yet.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// `GET` or `POST` (upper case).
    pub method: &'a str,
    /// The URL the sender addressed, as it would have computed it:
    /// `scheme://host[:port]/path?query` (Twilio signs it).
    pub url: &'a str,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The body bytes exactly as received.
    pub body: &'a [u8],
    /// The current time, in Unix seconds (timestamped schemes compare against it).
    pub now: i64,
}

/// The secret values a policy's references resolved to, in the order the policy names them
/// (two values during a rotation). Values are as stored: the crate decodes `whsec_` secrets.
/// Empty values are ignored (an empty HMAC key would be no secret at all).
#[derive(Clone, Default)]
pub struct Secrets {
    /// The signing secrets (HMAC keys, tokens compared as they are).
    pub signing: Vec<Vec<u8>>,
    /// Meta's `hub.verify_token` values (its subscription handshake), when the policy names one.
    pub verify_token: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secrets {{ signing: {} value(s), verify_token: {} value(s) }}",
            self.signing.len(),
            self.verify_token.len()
        )
    }
}

/// A header map from `(name, value)` pairs, for the tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}
