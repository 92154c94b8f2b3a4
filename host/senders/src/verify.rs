//! The presets' signature checks and the senders' delivery ids.
//!
//! # How signatures are compared
//!
//! A presented signature is decoded first (hex or base64, per the preset) and its bytes are
//! compared with the expected MAC's bytes with `subtle::ConstantTimeEq` (every pair of
//! presented signature and secret is compared, no early exit). Tokens compared as they are
//! (GitLab's `X-Gitlab-Token`, Graph's `clientState`, Meta's `hub.verify_token`) are hashed
//! with SHA-256 on both sides and the digests compared with `subtle::ConstantTimeEq`, so that
//! not even the secret's length shows in the time taken. Nothing compares secrets or
//! signatures with `==`.
//!
//! # Order of the checks
//!
//! No usable secret ([`Refusal::NoSecret`]), then the headers' presence and format, then the
//! signature, then (for timestamped schemes) the timestamp: a delivery is only said to be
//! expired once its signature is known to be genuine.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::util::{
    any_signature_matches, check_timestamp, decode_base64, decode_base64_lenient, decode_hex,
    header_bytes, header_str, hmac, hmac_sha256, malformed, parse_rfc3339, parse_unix, query_of,
    required_header, sha256, signing_keys, strip_prefix_ignore_case, token_in,
};
use crate::{Algorithm, Delivery, Encoding, HmacSpec, HookPolicy, Preset, Secrets, Verify};

pub(crate) mod template;
#[cfg(test)]
mod tests;

/// Why a delivery was refused. Its `Display` is the faultstring of the 401: it says which
/// check failed and never which byte, nor anything about the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A header the preset needs is absent (or empty).
    MissingHeader(String),
    /// A header is present but not in the preset's format (`expected` says the format).
    Malformed {
        /// The header.
        header: String,
        /// The expected format, e.g. `sha256=<hex>`.
        expected: String,
    },
    /// No signature in the header matches the body under any of the secrets.
    BadSignature(String),
    /// A token compared as it is (GitLab's `X-Gitlab-Token`, Graph's `clientState`, Meta's
    /// `hub.verify_token`) is absent or equals none of the secrets; the field is its name.
    BadToken(String),
    /// The signed timestamp is further from now than the tolerance.
    Expired {
        /// The header holding the timestamp.
        header: String,
        /// The tolerance, in seconds.
        tolerance_secs: u64,
    },
    /// The body is not what the preset signs over (Graph's clientState needs JSON); the field
    /// says what was expected.
    BadBody(String),
    /// None of the policy's secrets has a value (the server resolved none).
    NoSecret,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhook verification failed: ")?;
        match self {
            Refusal::MissingHeader(header) => write!(f, "missing header {header}"),
            Refusal::Malformed { header, expected } => {
                write!(f, "header {header} is malformed (expected {expected})")
            }
            // Twilio signs the URL and the form parameters: a proxy that changes the URL is
            // the usual cause, which `verify.url` fixes.
            Refusal::BadSignature(header) if header.eq_ignore_ascii_case(TWILIO_SIGNATURE) => {
                write!(
                    f,
                    "the signature in {header} does not match the URL and parameters"
                )
            }
            Refusal::BadSignature(header) => {
                write!(f, "the signature in {header} does not match the body")
            }
            Refusal::BadToken(name) => write!(f, "the token in {name} does not match"),
            Refusal::Expired {
                header,
                tolerance_secs,
            } => write!(
                f,
                "the timestamp in {header} is outside the tolerance of {tolerance_secs} seconds"
            ),
            Refusal::BadBody(expected) => write!(f, "the body is malformed (expected {expected})"),
            Refusal::NoSecret => f.write_str("no secret is configured for this hook"),
        }
    }
}

impl std::error::Error for Refusal {}

const HUB_SIGNATURE_256: &str = "X-Hub-Signature-256";
const HUB_SIGNATURE: &str = "X-Hub-Signature";
const GITEA_SIGNATURE: &str = "X-Gitea-Signature";
const FORGEJO_SIGNATURE: &str = "X-Forgejo-Signature";
const GITLAB_TOKEN: &str = "X-Gitlab-Token";
const STRIPE_SIGNATURE: &str = "Stripe-Signature";
const SLACK_SIGNATURE: &str = "X-Slack-Signature";
const SLACK_TIMESTAMP: &str = "X-Slack-Request-Timestamp";
const SHOPIFY_HMAC: &str = "X-Shopify-Hmac-Sha256";
const TWILIO_SIGNATURE: &str = "X-Twilio-Signature";
const ZOOM_SIGNATURE: &str = "x-zm-signature";
const ZOOM_TIMESTAMP: &str = "x-zm-request-timestamp";
const TWITCH_ID: &str = "Twitch-Eventsub-Message-Id";
const TWITCH_TIMESTAMP: &str = "Twitch-Eventsub-Message-Timestamp";
const TWITCH_SIGNATURE: &str = "Twitch-Eventsub-Message-Signature";
const DROPBOX_SIGNATURE: &str = "X-Dropbox-Signature";

const HEX_SHA256: &str = "<hex HMAC-SHA256>";
const PREFIXED_HEX_SHA256: &str = "sha256=<hex HMAC-SHA256>";
const UNIX_SECONDS: &str = "<Unix timestamp in seconds>";

/// Checks `delivery` against `verify` with the resolved `secrets` (any one of them may match:
/// rotation). The raw body bytes are what is checked; every comparison is constant time.
/// Empty secret values are ignored; with none left the delivery is refused
/// ([`Refusal::NoSecret`]).
pub fn verify(verify: &Verify, delivery: &Delivery<'_>, secrets: &Secrets) -> Result<(), Refusal> {
    let keys = signing_keys(secrets)?;
    let body = delivery.body;
    match &verify.preset {
        Preset::GitHub | Preset::Meta => {
            let sig = hex_signature(delivery, HUB_SIGNATURE_256, "sha256=", PREFIXED_HEX_SHA256)?;
            hmac_matches(&keys, &[body], &sig, HUB_SIGNATURE_256)
        }
        Preset::Bitbucket => {
            let sig = hex_signature(delivery, HUB_SIGNATURE, "sha256=", PREFIXED_HEX_SHA256)?;
            hmac_matches(&keys, &[body], &sig, HUB_SIGNATURE)
        }
        Preset::Gitea => {
            // Gitea sends its own header and GitHub's; Forgejo its own as well.
            let (header, sig) = if header_bytes(delivery, GITEA_SIGNATURE).is_some() {
                (
                    GITEA_SIGNATURE,
                    hex_signature(delivery, GITEA_SIGNATURE, "", HEX_SHA256)?,
                )
            } else if header_bytes(delivery, FORGEJO_SIGNATURE).is_some() {
                (
                    FORGEJO_SIGNATURE,
                    hex_signature(delivery, FORGEJO_SIGNATURE, "", HEX_SHA256)?,
                )
            } else if header_bytes(delivery, HUB_SIGNATURE_256).is_some() {
                (
                    HUB_SIGNATURE_256,
                    hex_signature(delivery, HUB_SIGNATURE_256, "sha256=", PREFIXED_HEX_SHA256)?,
                )
            } else {
                return Err(Refusal::MissingHeader(GITEA_SIGNATURE.to_owned()));
            };
            hmac_matches(&keys, &[body], &sig, header)
        }
        Preset::Dropbox => {
            let sig = hex_signature(delivery, DROPBOX_SIGNATURE, "", HEX_SHA256)?;
            hmac_matches(&keys, &[body], &sig, DROPBOX_SIGNATURE)
        }
        Preset::Shopify => {
            let value = required_header(delivery, SHOPIFY_HMAC, "<base64 HMAC-SHA256>")?;
            let sig = decode_base64(value)
                .filter(|s| s.len() == 32)
                .ok_or_else(|| malformed(SHOPIFY_HMAC, "<base64 HMAC-SHA256>"))?;
            hmac_matches(&keys, &[body], &sig, SHOPIFY_HMAC)
        }
        Preset::GitLab => {
            let Some(token) = header_bytes(delivery, GITLAB_TOKEN) else {
                return Err(Refusal::MissingHeader(GITLAB_TOKEN.to_owned()));
            };
            if token_in(token, &keys) {
                Ok(())
            } else {
                Err(Refusal::BadToken(GITLAB_TOKEN.to_owned()))
            }
        }
        Preset::Stripe => stripe(verify, delivery, &keys),
        Preset::Slack => v0_scheme(verify, delivery, &keys, SLACK_SIGNATURE, SLACK_TIMESTAMP),
        Preset::Zoom => v0_scheme(verify, delivery, &keys, ZOOM_SIGNATURE, ZOOM_TIMESTAMP),
        Preset::Twitch => twitch(verify, delivery, &keys),
        Preset::StandardWebhooks => standard_webhooks(verify, delivery, &keys),
        Preset::Twilio { url } => twilio(url.as_deref(), delivery, &keys),
        Preset::Graph => graph(delivery, &keys),
        Preset::Hmac(spec) => generic_hmac(spec, verify, delivery, &keys),
    }
}

/// A `<prefix><hex>` SHA-256 signature header, decoded.
fn hex_signature(
    delivery: &Delivery<'_>,
    header: &str,
    prefix: &str,
    expected: &str,
) -> Result<Vec<u8>, Refusal> {
    let value = required_header(delivery, header, expected)?;
    strip_prefix_ignore_case(value, prefix)
        .and_then(decode_hex)
        .filter(|sig| sig.len() == 32)
        .ok_or_else(|| malformed(header, expected))
}

/// Whether `signature` is the HMAC-SHA256 of `parts` under one of `keys`.
fn hmac_matches(
    keys: &[&[u8]],
    parts: &[&[u8]],
    signature: &[u8],
    header: &str,
) -> Result<(), Refusal> {
    signatures_match(
        Algorithm::Sha256,
        keys,
        parts,
        std::slice::from_ref(&signature.to_vec()),
        header,
    )
}

/// Whether one of `presented` is the HMAC of `parts` under one of `keys`.
fn signatures_match(
    algorithm: Algorithm,
    keys: &[&[u8]],
    parts: &[&[u8]],
    presented: &[Vec<u8>],
    header: &str,
) -> Result<(), Refusal> {
    let expected: Vec<Vec<u8>> = keys
        .iter()
        .filter_map(|key| hmac(algorithm, key, parts))
        .collect();
    if any_signature_matches(presented, &expected) {
        Ok(())
    } else {
        Err(Refusal::BadSignature(header.to_owned()))
    }
}

/// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>][,v0=<hex>]`, HMAC-SHA256 of
/// `t.body` keyed with the whole secret string (`whsec_...` included, as Stripe's libraries do).
fn stripe(verify: &Verify, delivery: &Delivery<'_>, keys: &[&[u8]]) -> Result<(), Refusal> {
    const EXPECTED: &str = "t=<timestamp>,v1=<hex signature>";
    let value = required_header(delivery, STRIPE_SIGNATURE, EXPECTED)?;
    let mut timestamp = None;
    let mut saw_v1 = false;
    let mut signatures = Vec::new();
    for item in value.split(',') {
        let Some((key, val)) = item.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    parse_unix(val.trim()).ok_or_else(|| malformed(STRIPE_SIGNATURE, EXPECTED))?,
                );
            }
            "v1" => {
                saw_v1 = true;
                if let Some(sig) = decode_hex(val).filter(|s| s.len() == 32) {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    let (Some(timestamp), true) = (timestamp, saw_v1) else {
        return Err(malformed(STRIPE_SIGNATURE, EXPECTED));
    };
    let signed_prefix = format!("{timestamp}.");
    signatures_match(
        Algorithm::Sha256,
        keys,
        &[signed_prefix.as_bytes(), delivery.body],
        &signatures,
        STRIPE_SIGNATURE,
    )?;
    check_timestamp(timestamp, delivery.now, verify.tolerance, STRIPE_SIGNATURE)
}

/// Slack's and Zoom's scheme: `v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">`, the
/// timestamp (Unix seconds) in its own header, signed as sent.
fn v0_scheme(
    verify: &Verify,
    delivery: &Delivery<'_>,
    keys: &[&[u8]],
    signature_header: &str,
    timestamp_header: &str,
) -> Result<(), Refusal> {
    let sig = hex_signature(delivery, signature_header, "v0=", "v0=<hex HMAC-SHA256>")?;
    let ts_text = required_header(delivery, timestamp_header, UNIX_SECONDS)?;
    let timestamp = parse_unix(ts_text).ok_or_else(|| malformed(timestamp_header, UNIX_SECONDS))?;
    hmac_matches(
        keys,
        &[b"v0:", ts_text.as_bytes(), b":", delivery.body],
        &sig,
        signature_header,
    )?;
    check_timestamp(timestamp, delivery.now, verify.tolerance, timestamp_header)
}

/// Twitch EventSub: `sha256=<hex HMAC-SHA256 of id + timestamp + body>`, the timestamp in
/// RFC 3339.
fn twitch(verify: &Verify, delivery: &Delivery<'_>, keys: &[&[u8]]) -> Result<(), Refusal> {
    let sig = hex_signature(delivery, TWITCH_SIGNATURE, "sha256=", PREFIXED_HEX_SHA256)?;
    let id = required_header(delivery, TWITCH_ID, "<message id>")?;
    let ts_text = required_header(delivery, TWITCH_TIMESTAMP, "<RFC 3339 date-time>")?;
    let timestamp = parse_rfc3339(ts_text)
        .ok_or_else(|| malformed(TWITCH_TIMESTAMP, "<RFC 3339 date-time>"))?;
    hmac_matches(
        keys,
        &[id.as_bytes(), ts_text.as_bytes(), delivery.body],
        &sig,
        TWITCH_SIGNATURE,
    )?;
    check_timestamp(timestamp, delivery.now, verify.tolerance, TWITCH_TIMESTAMP)
}

/// A Standard Webhooks secret.
enum StandardKey {
    /// `whsec_<base64>` (or a secret without a prefix): an HMAC-SHA256 key, for `v1`.
    Hmac(Vec<u8>),
    /// `whpk_<base64>`: an ed25519 public key, for `v1a`.
    Ed25519(Vec<u8>),
}

/// The key a Standard Webhooks secret stands for. `whsec_<base64>`: the decoded bytes.
/// `whpk_<base64>`: an ed25519 public key (32 bytes). A secret without a prefix is decoded as
/// base64 when it is base64 (padding optional), as the spec's libraries do, and used as it is
/// otherwise; so is a `whsec_` secret whose rest is not base64.
fn standard_key(secret: &[u8]) -> Option<StandardKey> {
    if let Some(public) = secret.strip_prefix(b"whpk_") {
        return decode_base64_lenient(public)
            .filter(|key| key.len() == 32)
            .map(StandardKey::Ed25519);
    }
    let rest = secret.strip_prefix(b"whsec_").unwrap_or(secret);
    let key = decode_base64_lenient(rest).unwrap_or_else(|| rest.to_vec());
    (!key.is_empty()).then_some(StandardKey::Hmac(key))
}

/// Standard Webhooks (and Svix): `webhook-id`, `webhook-timestamp`, `webhook-signature`
/// (space-separated `v1,<base64>` / `v1a,<base64>`), over `id.timestamp.body`.
fn standard_webhooks(
    verify: &Verify,
    delivery: &Delivery<'_>,
    keys: &[&[u8]],
) -> Result<(), Refusal> {
    const EXPECTED: &str = "v1,<base64 signature>";
    // The unbranded headers, or Svix's when only those came.
    let prefix = if header_bytes(delivery, "webhook-id").is_none()
        && header_bytes(delivery, "webhook-signature").is_none()
        && header_bytes(delivery, "svix-id").is_some()
    {
        "svix"
    } else {
        "webhook"
    };
    let (id_header, ts_header, sig_header) = (
        format!("{prefix}-id"),
        format!("{prefix}-timestamp"),
        format!("{prefix}-signature"),
    );
    let id = required_header(delivery, &id_header, "<message id>")?;
    let ts_text = required_header(delivery, &ts_header, UNIX_SECONDS)?;
    let timestamp = parse_unix(ts_text).ok_or_else(|| malformed(&ts_header, UNIX_SECONDS))?;
    let value = required_header(delivery, &sig_header, EXPECTED)?;
    let mut any_entry = false;
    let mut symmetric = Vec::new();
    let mut asymmetric = Vec::new();
    for entry in value.split_whitespace() {
        match entry.split_once(',') {
            Some(("v1", sig)) => {
                any_entry = true;
                symmetric.extend(decode_base64(sig).filter(|s| s.len() == 32));
            }
            Some(("v1a", sig)) => {
                any_entry = true;
                asymmetric.extend(decode_base64(sig).filter(|s| s.len() == 64));
            }
            _ => {}
        }
    }
    if !any_entry {
        return Err(malformed(&sig_header, EXPECTED));
    }
    let signed_head = format!("{id}.{timestamp}.");
    let parts: [&[u8]; 2] = [signed_head.as_bytes(), delivery.body];
    let (mut hmac_keys, mut public_keys) = (Vec::new(), Vec::new());
    for key in keys.iter().filter_map(|k| standard_key(k)) {
        match key {
            StandardKey::Hmac(key) => hmac_keys.push(key),
            StandardKey::Ed25519(key) => public_keys.push(key),
        }
    }
    let hmac_keys: Vec<&[u8]> = hmac_keys.iter().map(Vec::as_slice).collect();
    let symmetric_ok = signatures_match(
        Algorithm::Sha256,
        &hmac_keys,
        &parts,
        &symmetric,
        &sig_header,
    )
    .is_ok();
    let asymmetric_ok = !asymmetric.is_empty() && !public_keys.is_empty() && {
        let message = [signed_head.as_bytes(), delivery.body].concat();
        public_keys.iter().any(|key| {
            let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key);
            asymmetric
                .iter()
                .any(|sig| key.verify(&message, sig).is_ok())
        })
    };
    if !(symmetric_ok || asymmetric_ok) {
        return Err(Refusal::BadSignature(sig_header));
    }
    check_timestamp(timestamp, delivery.now, verify.tolerance, &ts_header)
}

/// Twilio: base64 HMAC-SHA1, keyed with the auth token, of the URL followed by the POST form
/// parameters (keys sorted, each key's values sorted and deduplicated, as Twilio's libraries
/// do), each as key then value. A JSON body is signed through the URL's `bodySHA256`
/// parameter, which must be the body's SHA-256. The URL is tried without its port and with
/// the scheme's default port (Twilio's libraries do both).
fn twilio(
    configured_url: Option<&str>,
    delivery: &Delivery<'_>,
    keys: &[&[u8]],
) -> Result<(), Refusal> {
    const EXPECTED: &str = "<base64 HMAC-SHA1>";
    let value = required_header(delivery, TWILIO_SIGNATURE, EXPECTED)?;
    let sig = decode_base64(value)
        .filter(|s| s.len() == 20)
        .ok_or_else(|| malformed(TWILIO_SIGNATURE, EXPECTED))?;
    let url = twilio_url(configured_url, delivery.url);
    let query = query_of(&url);
    let body_hash = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "bodySHA256")
        .map(|(_, value)| value.into_owned());
    let mut params: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(body_hash) = body_hash {
        let presented = decode_hex(&body_hash).unwrap_or_default();
        if !crate::util::ct_eq(&presented, &sha256(delivery.body)) {
            return Err(Refusal::BadSignature(TWILIO_SIGNATURE.to_owned()));
        }
    } else if !is_form(delivery) && !delivery.body.is_empty() {
        // Only the URL would be signed: a body Twilio did not hash is not covered.
        return Err(malformed(
            "bodySHA256",
            "a bodySHA256 query parameter for a body that is not a form",
        ));
    } else {
        for (key, value) in form_urlencoded::parse(delivery.body) {
            params
                .entry(key.into_owned())
                .or_default()
                .insert(value.into_owned());
        }
    }
    let mut signed_params = String::new();
    for (key, values) in &params {
        for value in values {
            signed_params.push_str(key);
            signed_params.push_str(value);
        }
    }
    let mut candidates = vec![without_port(&url), with_port(&url)];
    candidates.dedup();
    let mut expected = Vec::new();
    for candidate in &candidates {
        for key in keys {
            expected.extend(hmac(
                Algorithm::Sha1,
                key,
                &[candidate.as_bytes(), signed_params.as_bytes()],
            ));
        }
    }
    if any_signature_matches(std::slice::from_ref(&sig), &expected) {
        Ok(())
    } else {
        Err(Refusal::BadSignature(TWILIO_SIGNATURE.to_owned()))
    }
}

/// The URL Twilio signed: the configured one (its scheme, host, port and path) with the query
/// as it arrived (Twilio adds `bodySHA256` to it), or the URL as the server reconstructed it.
fn twilio_url(configured: Option<&str>, arrived: &str) -> String {
    let arrived = arrived.split_once('#').map_or(arrived, |(u, _)| u);
    let Some(configured) = configured else {
        return arrived.to_owned();
    };
    let base = configured
        .split_once(['?', '#'])
        .map_or(configured, |(base, _)| base);
    let query = query_of(arrived);
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{query}")
    }
}

/// `scheme://[userinfo@]host[:port]` and the rest of a URL, with the port split off.
struct UrlParts<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<&'a str>,
    rest: &'a str,
}

fn url_parts(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = after.get(..end)?;
    let rest = after.get(end..)?;
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let (host, port) = match authority.rfind(':') {
        Some(colon) if colon >= host_start => {
            let port = authority.get(colon + 1..)?;
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                (authority.get(..colon)?, Some(port))
            } else {
                (authority, None)
            }
        }
        _ => (authority, None),
    };
    Some(UrlParts {
        scheme,
        host,
        port,
        rest,
    })
}

fn without_port(url: &str) -> String {
    match url_parts(url) {
        Some(p) if p.port.is_some() => format!("{}://{}{}", p.scheme, p.host, p.rest),
        _ => url.to_owned(),
    }
}

fn with_port(url: &str) -> String {
    match url_parts(url) {
        Some(p) if p.port.is_none() => {
            let port = if p.scheme.eq_ignore_ascii_case("https") {
                "443"
            } else {
                "80"
            };
            format!("{}://{}:{port}{}", p.scheme, p.host, p.rest)
        }
        _ => url.to_owned(),
    }
}

/// Whether the body is a form (Twilio signs its parameters): a POST with a form content type.
fn is_form(delivery: &Delivery<'_>) -> bool {
    delivery.method.eq_ignore_ascii_case("POST")
        && header_str(delivery, "content-type").is_some_and(|ct| {
            ct.split(';').next().is_some_and(|mime| {
                mime.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// Microsoft Graph: every notification's `clientState` equals one of the secrets.
fn graph(delivery: &Delivery<'_>, keys: &[&[u8]]) -> Result<(), Refusal> {
    #[derive(Deserialize)]
    struct Notifications {
        value: Vec<Notification>,
    }
    #[derive(Deserialize)]
    struct Notification {
        #[serde(rename = "clientState")]
        client_state: Option<String>,
    }
    let notifications = serde_json::from_slice::<Notifications>(delivery.body)
        .ok()
        .filter(|n| !n.value.is_empty())
        .ok_or_else(|| {
            Refusal::BadBody("JSON with a `value` list of change notifications".to_owned())
        })?;
    // Every notification is checked, whatever the first ones gave.
    let all_match = notifications.value.iter().fold(true, |ok, notification| {
        let state = notification.client_state.as_deref().unwrap_or_default();
        ok & token_in(state.as_bytes(), keys)
    });
    if all_match {
        Ok(())
    } else {
        Err(Refusal::BadToken("clientState".to_owned()))
    }
}

/// The generic HMAC: the header (after its prefix) decoded per the encoding, over the signed
/// template; the timestamp header, when named, within the tolerance.
fn generic_hmac(
    spec: &HmacSpec,
    verify: &Verify,
    delivery: &Delivery<'_>,
    keys: &[&[u8]],
) -> Result<(), Refusal> {
    let (name, size) = match spec.algorithm {
        Algorithm::Sha1 => ("HMAC-SHA1", 20),
        Algorithm::Sha256 => ("HMAC-SHA256", 32),
        Algorithm::Sha512 => ("HMAC-SHA512", 64),
    };
    let expected = match spec.encoding {
        Encoding::Hex => format!("{}<hex {name}>", spec.prefix),
        Encoding::Base64 => format!("{}<base64 {name}>", spec.prefix),
    };
    let value = required_header(delivery, &spec.header, &expected)?;
    let sig = strip_prefix_ignore_case(value, &spec.prefix)
        .and_then(|text| match spec.encoding {
            Encoding::Hex => decode_hex(text),
            Encoding::Base64 => decode_base64(text),
        })
        .filter(|sig| sig.len() == size)
        .ok_or_else(|| malformed(&spec.header, &expected))?;
    let timestamp = match &spec.timestamp_header {
        Some(header) => {
            let text = required_header(delivery, header, UNIX_SECONDS)?;
            Some((
                header,
                parse_unix(text).ok_or_else(|| malformed(header, UNIX_SECONDS))?,
            ))
        }
        None => None,
    };
    let signed = template::render(&spec.signed, delivery, &spec.header)?;
    signatures_match(spec.algorithm, keys, &[&signed], &[sig], &spec.header)?;
    match timestamp {
        Some((header, timestamp)) => {
            check_timestamp(timestamp, delivery.now, verify.tolerance, header)
        }
        None => Ok(()),
    }
}

/// The longest delivery id accepted, in bytes; a longer one counts as absent.
pub const MAX_DELIVERY_ID: usize = 256;

/// The sender's id of this delivery, for replay protection, or `None` when it gives none:
/// the policy's `replay.header` if set, else the preset's own source (`X-GitHub-Delivery`,
/// `X-Gitlab-Event-UUID`, the Stripe event's `id` in the body, `X-Shopify-Webhook-Id`,
/// `webhook-id`, Slack's `event_id` in the body, `Twitch-Eventsub-Message-Id`,
/// `I-Twilio-Idempotency-Token`, ...), and for any hook an `Idempotency-Key` header when that
/// gives none. Always `None` when the replay window is zero.
///
/// An id is trimmed; one that is empty, longer than [`MAX_DELIVERY_ID`] bytes, not UTF-8 or
/// holding a control character counts as absent (the next source is tried).
pub fn delivery_id(policy: &HookPolicy, delivery: &Delivery<'_>) -> Option<String> {
    if policy.replay.window.is_zero() {
        return None;
    }
    let own = match &policy.replay.header {
        Some(header) => header_id(delivery, header),
        None => policy
            .verify
            .as_ref()
            .and_then(|verify| preset_id(&verify.preset, delivery)),
    };
    own.or_else(|| header_id(delivery, "Idempotency-Key"))
}

/// The preset's own delivery id.
fn preset_id(preset: &Preset, delivery: &Delivery<'_>) -> Option<String> {
    let first = |headers: &[&str]| headers.iter().find_map(|h| header_id(delivery, h));
    match preset {
        Preset::GitHub => first(&["X-GitHub-Delivery"]),
        Preset::Gitea => first(&[
            "X-Gitea-Delivery",
            "X-Forgejo-Delivery",
            "X-GitHub-Delivery",
        ]),
        Preset::Bitbucket => first(&["X-Request-UUID", "X-Request-Id"]),
        Preset::GitLab => first(&["X-Gitlab-Event-UUID"]),
        Preset::Stripe => {
            #[derive(Deserialize)]
            struct Event {
                id: Option<String>,
            }
            body_json::<Event>(delivery).and_then(|e| valid_id(e.id?.as_str()))
        }
        Preset::Slack => {
            #[derive(Deserialize)]
            struct Event {
                event_id: Option<String>,
            }
            body_json::<Event>(delivery).and_then(|e| valid_id(e.event_id?.as_str()))
        }
        Preset::Shopify => first(&["X-Shopify-Webhook-Id", "X-Shopify-Event-Id"]),
        Preset::StandardWebhooks => first(&["webhook-id", "svix-id"]),
        Preset::Twilio { .. } => first(&["I-Twilio-Idempotency-Token"]),
        Preset::Twitch => first(&[TWITCH_ID]),
        Preset::Meta | Preset::Zoom | Preset::Dropbox | Preset::Graph | Preset::Hmac(_) => None,
    }
}

/// The body as JSON of type `T`, when it is a JSON object of that shape.
fn body_json<'a, T: Deserialize<'a>>(delivery: &Delivery<'a>) -> Option<T> {
    let start = delivery
        .body
        .iter()
        .position(|b| !b.is_ascii_whitespace())?;
    if delivery.body.get(start) != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(delivery.body).ok()
}

fn header_id(delivery: &Delivery<'_>, name: &str) -> Option<String> {
    let bytes = header_bytes(delivery, name)?;
    valid_id(std::str::from_utf8(bytes).ok()?)
}

fn valid_id(id: &str) -> Option<String> {
    let id = id.trim();
    (!id.is_empty() && id.len() <= MAX_DELIVERY_ID && !id.chars().any(char::is_control))
        .then(|| id.to_owned())
}

/// The HMAC-SHA256 of `message` under `key`, in lower-case hex (Zoom's `encryptedToken`).
pub(crate) fn hex_hmac_sha256(key: &[u8], message: &[u8]) -> Option<String> {
    hmac_sha256(key, &[message]).map(hex::encode)
}
