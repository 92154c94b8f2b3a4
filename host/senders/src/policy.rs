//! A hook's policy, from the parameters of its `core.st2.webhook` trigger. Every key but `url`
//! is Stormhook's (StackStorm's rule files have only `url`, and stay valid):
//!
//! ```yaml
//! trigger:
//!   type: core.st2.webhook
//!   parameters:
//!     url: github
//!     verify:
//!       preset: github                      # see [`Preset`]
//!       secret: {datastore: github_secret}  # or {config: webhook_secret}, or a list of them
//!       tolerance_secs: 300                 # timestamped presets (default 300)
//!       require_api_key: false              # true: an API key or token is needed as well
//!     replay:
//!       window_secs: 86400                  # default one day; 0 turns replay protection off
//!       header: Idempotency-Key             # where the delivery id is, instead of the preset's
//!     handshake: graph                      # a handshake without a preset (graph, dropbox, ...)
//!     store_handshakes: false               # true: a handshake is stored as an event too
//! ```
//!
//! Secrets are references, never values: a rule is shown by the API whole. A secret written
//! as a plain string is refused, with the way to reference it instead.
//!
//! Keys some presets add to `verify`:
//!
//! ```yaml
//!     verify:                               # Meta: the subscription handshake's token
//!       preset: meta
//!       secret: {datastore: meta_app_secret}
//!       verify_token: {datastore: meta_verify_token}   # or a list (also with `handshake: meta`)
//!     verify:                               # Twilio behind a proxy: the URL Twilio was given
//!       preset: twilio                      # (its scheme, host, port and path; the query is
//!       secret: {datastore: twilio_token}   # the one that arrived)
//!       url: https://example.com/api/v1/webhooks/twilio
//!     verify:                               # the generic HMAC
//!       preset: hmac
//!       secret: {datastore: my_secret}
//!       header: X-Signature                 # required
//!       algorithm: sha256                   # sha1, sha256 (default), sha512
//!       encoding: hex                       # hex (default, any case) or base64
//!       prefix: "sha256="                   # before the signature in the header (default none)
//!       signed: "{header:X-Timestamp}.{body}"  # {body} (default), {url}, {method}, {header:<Name>}
//!       timestamp_header: X-Timestamp       # Unix seconds, checked against tolerance_secs
//! ```
//!
//! Unknown keys in `verify` and `replay`, and keys of another preset, are refused by name.
//! `handshake: zoom` (or `meta`) without a `verify` giving its secret (or verify token) parses,
//! but its handshakes are refused (`Refusal::NoSecret`): Zoom's answer is keyed with the
//! secret, Meta's needs the verify token.

use std::time::Duration;

mod parse;
#[cfg(test)]
mod tests;

/// Where a secret's value is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// A datastore key (`st2 key set`; decrypted when it is a secret), system scope.
    Datastore(String),
    /// A key of the pack's config (`<configs>/<pack>.yaml`), of the rule's pack.
    Config(String),
}

/// The verification presets, each its provider's published algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preset {
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    GitHub,
    /// Gitea/Forgejo: `X-Gitea-Signature: <hex HMAC-SHA256 of the body>` (or GitHub's header).
    Gitea,
    /// Bitbucket: `X-Hub-Signature: sha256=<hex>`.
    Bitbucket,
    /// `X-Gitlab-Token: <secret>`, compared in constant time.
    GitLab,
    /// `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">[,v1=...]`, tolerance.
    Stripe,
    /// `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:ts:body">`, `X-Slack-Request-Timestamp`.
    Slack,
    /// `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.
    Shopify,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64> ...`
    /// over `id.timestamp.body`, `whsec_<base64>` secrets.
    StandardWebhooks,
    /// `X-Twilio-Signature: <base64 HMAC-SHA1 of url + sorted form key/values>` (or, for JSON
    /// bodies, the url with its `bodySHA256` query parameter checked against the body).
    Twilio {
        /// The URL Twilio was given, when it differs from what the server reconstructs
        /// (behind a proxy).
        url: Option<String>,
    },
    /// Meta (Facebook, Instagram, WhatsApp): `X-Hub-Signature-256` with the app secret; the
    /// subscription handshake checks `hub.verify_token`.
    Meta,
    /// Zoom: `x-zm-signature: v0=<hex HMAC-SHA256 of "v0:ts:body">`, `x-zm-request-timestamp`.
    Zoom,
    /// Twitch EventSub: `Twitch-Eventsub-Message-Signature: sha256=<hex HMAC-SHA256 of
    /// id + timestamp + body>`.
    Twitch,
    /// Dropbox: `X-Dropbox-Signature: <hex HMAC-SHA256 of the body>` with the app secret.
    Dropbox,
    /// Microsoft Graph change notifications: each notification's `clientState` equals the secret.
    Graph,
    /// A generic HMAC.
    Hmac(HmacSpec),
}

/// The preset names `verify.preset` accepts (`standard_webhooks` and `svix` are other names of
/// `standard-webhooks`).
pub const PRESET_NAMES: [&str; 17] = [
    "github",
    "gitea",
    "bitbucket",
    "gitlab",
    "stripe",
    "slack",
    "shopify",
    "standard-webhooks",
    "standard_webhooks",
    "svix",
    "twilio",
    "meta",
    "zoom",
    "twitch",
    "dropbox",
    "graph",
    "hmac",
];

impl Preset {
    /// The preset's name in a rule (`github`, `standard-webhooks`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Preset::GitHub => "github",
            Preset::Gitea => "gitea",
            Preset::Bitbucket => "bitbucket",
            Preset::GitLab => "gitlab",
            Preset::Stripe => "stripe",
            Preset::Slack => "slack",
            Preset::Shopify => "shopify",
            Preset::StandardWebhooks => "standard-webhooks",
            Preset::Twilio { .. } => "twilio",
            Preset::Meta => "meta",
            Preset::Zoom => "zoom",
            Preset::Twitch => "twitch",
            Preset::Dropbox => "dropbox",
            Preset::Graph => "graph",
            Preset::Hmac(_) => "hmac",
        }
    }

    /// The handshake the provider runs before it delivers, if any: the default of
    /// [`HookPolicy::handshake`] for this preset.
    pub fn handshake(&self) -> Option<HandshakeKind> {
        match self {
            Preset::Slack => Some(HandshakeKind::Slack),
            Preset::Meta => Some(HandshakeKind::Meta),
            Preset::Zoom => Some(HandshakeKind::Zoom),
            Preset::Twitch => Some(HandshakeKind::Twitch),
            Preset::Dropbox => Some(HandshakeKind::Dropbox),
            Preset::Graph => Some(HandshakeKind::Graph),
            _ => None,
        }
    }
}

/// The generic HMAC preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacSpec {
    /// The header holding the signature.
    pub header: String,
    /// The hash.
    pub algorithm: Algorithm,
    /// How the signature is written.
    pub encoding: Encoding,
    /// What precedes the signature in the header (`sha256=`), default none.
    pub prefix: String,
    /// What is signed: a template of `{body}`, `{url}`, `{method}` and `{header:<Name>}`
    /// (default `{body}`).
    pub signed: String,
    /// A header holding a Unix timestamp to check against the tolerance, if any.
    pub timestamp_header: Option<String>,
}

/// A hash for [`HmacSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// A signature's text encoding for [`HmacSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// How a hook's sender is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// The algorithm.
    pub preset: Preset,
    /// The signing secret's references, in order (two during a rotation).
    pub secrets: Vec<SecretRef>,
    /// Meta's `hub.verify_token` references (Meta only; may be empty).
    pub verify_token: Vec<SecretRef>,
    /// How far a signed timestamp may be from now, either way.
    pub tolerance: Duration,
    /// Whether an API key or token is required as well as the signature.
    pub require_api_key: bool,
}

/// Replay protection: a delivery id seen within the window is a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// How long a delivery id is remembered; zero turns replay protection off.
    pub window: Duration,
    /// The header holding the delivery id, instead of the preset's own source.
    pub header: Option<String>,
}

/// A handshake that is answered without a preset's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Slack's `url_verification`.
    Slack,
    /// Meta's `hub.challenge` (GET).
    Meta,
    /// Microsoft Graph's `validationToken`.
    Graph,
    /// Zoom's `endpoint.url_validation`.
    Zoom,
    /// Twitch's `webhook_callback_verification`.
    Twitch,
    /// Dropbox's `challenge` (GET).
    Dropbox,
}

/// Everything Stormhook adds to a webhook trigger's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookPolicy {
    /// How the sender is verified; `None`: by API key or token, as in StackStorm.
    pub verify: Option<Verify>,
    /// Replay protection.
    pub replay: Replay,
    /// The handshake to answer: the preset's own (Slack, Meta, Zoom, Twitch, Dropbox, Graph)
    /// unless `handshake` names another.
    pub handshake: Option<HandshakeKind>,
    /// Whether a handshake is stored as an event as well as answered.
    pub store_handshakes: bool,
    /// A responder component that computes the answer to each delivery.
    pub respond: Option<Respond>,
    /// What deliveries the hook takes besides StackStorm's (JSON and form POSTs).
    pub accept: Accept,
}

/// What a hook takes besides StackStorm's JSON and form POSTs
/// (`accept: {get: true, any_content_type: true, raw_body: true, cloudevents: true}`); each
/// is off by default, so a hook answers as StackStorm's does unless it says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accept {
    /// `GET` deliveries, their query parameters in the payload's `query` (lists of values, as
    /// form bodies are) and an empty `body`. The StackStorm API's `GET /webhooks/<url>` of such
    /// a hook is a delivery, too.
    pub get: bool,
    /// Bodies of any media type: what is not JSON or a form is stored as
    /// `{"text": ..., "media_type": ...}` (UTF-8) or `{"base64": ..., "media_type": ...}`.
    pub any_content_type: bool,
    /// The body as received in the payload's `raw_body` (text, or `{"base64": ...}`), so a rule
    /// component can check a signature no preset covers.
    pub raw_body: bool,
    /// CloudEvents: structured mode (`application/cloudevents+json`: the event's `data` is the
    /// body) and binary mode (`ce-*` headers); the attributes in the payload's `cloudevent`,
    /// and `source` + `id` as the delivery id.
    pub cloudevents: bool,
}

/// A responder component (the `responder` WIT world) that computes a hook's answer, on the
/// request path, after verification and before the delivery is stored:
/// `respond: {entry_point: reply.wasm, timeout_ms: 100, memory_mb: 16, store_on_failure: true}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    /// The component file, in the rule file's folder.
    pub entry_point: String,
    /// Its deadline per call (default: the rule components' deadline, 100 ms).
    pub timeout_ms: Option<u64>,
    /// Its memory cap (default: the rule components' cap).
    pub memory_mb: Option<u64>,
    /// Whether a delivery is stored when the responder fails (traps, overruns, returns an
    /// error or an answer no HTTP response may carry); default true. The hook then answers
    /// as it would without a responder (202 and the body), or 502 when not stored.
    pub store_on_failure: bool,
}

/// The keys of a webhook trigger's parameters that [`HookPolicy::parse`] reads.
pub const POLICY_KEYS: [&str; 6] = [
    "verify",
    "replay",
    "handshake",
    "store_handshakes",
    "respond",
    "accept",
];

/// The default tolerance of timestamped presets (Stripe's, Slack's, Standard Webhooks').
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// The default replay window.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(86_400);

impl HookPolicy {
    /// The policy in a webhook trigger's `parameters` (which also hold `url`), or `None` when
    /// they name none of [`POLICY_KEYS`] (a StackStorm hook: API key or token, no replay
    /// protection unless `replay` is given). The error names the key and what is wrong, for the
    /// rule file's message: an unknown preset (listing the known ones), a secret given as a
    /// value instead of a reference, a missing required key (`hmac`'s `header`), a wrong type.
    pub fn parse(
        parameters: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<HookPolicy>, String> {
        parse::policy(parameters)
    }

    /// Every secret reference the policy names (signing secrets, then verify tokens).
    pub fn secret_refs(&self) -> impl Iterator<Item = &SecretRef> {
        self.verify
            .iter()
            .flat_map(|v| v.secrets.iter().chain(v.verify_token.iter()))
    }
}
