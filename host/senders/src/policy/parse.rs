//! [`HookPolicy::parse`](crate::HookPolicy::parse): the policy keys of a webhook trigger's
//! parameters, checked key by key. Errors name the key (`verify.secret`, `replay.header`, ...)
//! and never repeat a value that could be a secret.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{
    Accept, Algorithm, DEFAULT_REPLAY_WINDOW, DEFAULT_TOLERANCE, Encoding, HandshakeKind, HmacSpec,
    HookPolicy, POLICY_KEYS, PRESET_NAMES, Preset, Replay, Respond, SecretRef, Verify,
};

/// The keys of `verify` every preset takes.
const VERIFY_KEYS: [&str; 5] = [
    "preset",
    "secret",
    "verify_token",
    "tolerance_secs",
    "require_api_key",
];
/// The keys of `verify` only the `hmac` preset takes.
const HMAC_KEYS: [&str; 6] = [
    "header",
    "algorithm",
    "encoding",
    "prefix",
    "signed",
    "timestamp_header",
];
/// The keys of `replay`.
const REPLAY_KEYS: [&str; 2] = ["window_secs", "header"];
/// The values of `handshake`.
const HANDSHAKE_NAMES: [&str; 6] = ["slack", "meta", "graph", "zoom", "twitch", "dropbox"];
/// The longest tolerance or replay window accepted: a year.
const MAX_SECS: u64 = 366 * 86_400;

pub(super) fn policy(parameters: &Map<String, Value>) -> Result<Option<HookPolicy>, String> {
    // `null` is the same as absent (a YAML key with no value).
    let get = |key: &str| parameters.get(key).filter(|v| !v.is_null());
    if POLICY_KEYS.iter().all(|key| get(key).is_none()) {
        return Ok(None);
    }
    let handshake = get("handshake").map(handshake_kind).transpose()?;
    let verify = get("verify").map(|v| verify(v, handshake)).transpose()?;
    let replay = get("replay").map(replay).transpose()?.unwrap_or(Replay {
        window: DEFAULT_REPLAY_WINDOW,
        header: None,
    });
    let store_handshakes = match get("store_handshakes") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("store_handshakes must be true or false".to_owned()),
    };
    let handshake = handshake.or_else(|| verify.as_ref().and_then(|v| v.preset.handshake()));
    if store_handshakes {
        let signed = matches!(
            (verify.as_ref().map(|v| &v.preset), handshake),
            (Some(Preset::Slack), Some(HandshakeKind::Slack))
                | (Some(Preset::Zoom), Some(HandshakeKind::Zoom))
                | (Some(Preset::Twitch), Some(HandshakeKind::Twitch))
        );
        if !signed {
            return Err("store_handshakes needs a handshake its sender signs (verify preset slack, zoom or twitch); other handshakes are answered but not verified, so they are never stored".to_owned());
        }
    }
    if parameters
        .get("url")
        .and_then(Value::as_str)
        .is_some_and(|url| url.trim_matches('/') == "st2")
    {
        return Err("the generic webhook `st2` takes no sender policy (it dispatches any trigger; its callers send an API key or token)".to_owned());
    }
    let respond = get("respond").map(respond).transpose()?;
    let accept = get("accept").map(accept).transpose()?.unwrap_or_default();
    Ok(Some(HookPolicy {
        verify,
        replay,
        handshake,
        store_handshakes,
        respond,
        accept,
    }))
}

fn handshake_kind(value: &Value) -> Result<HandshakeKind, String> {
    let known = || HANDSHAKE_NAMES.join(", ");
    let Some(name) = value.as_str() else {
        return Err(format!("handshake must be one of {}", known()));
    };
    Ok(match name {
        "slack" => HandshakeKind::Slack,
        "meta" => HandshakeKind::Meta,
        "graph" => HandshakeKind::Graph,
        "zoom" => HandshakeKind::Zoom,
        "twitch" => HandshakeKind::Twitch,
        "dropbox" => HandshakeKind::Dropbox,
        other => {
            return Err(format!(
                "handshake: unknown handshake `{}` (known: {})",
                shown(other),
                known()
            ));
        }
    })
}

fn verify(value: &Value, handshake: Option<HandshakeKind>) -> Result<Verify, String> {
    let Value::Object(map) = value else {
        return Err("verify must be a mapping (preset: ..., secret: {datastore: ...})".to_owned());
    };
    let preset_name = match map.get("preset") {
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err("verify.preset must be a string".to_owned()),
        None => {
            return Err(format!(
                "verify needs a preset (one of {})",
                PRESET_NAMES.join(", ")
            ));
        }
    };
    if !PRESET_NAMES.contains(&preset_name) {
        return Err(format!(
            "verify.preset: unknown preset `{}` (known: {})",
            shown(preset_name),
            PRESET_NAMES.join(", ")
        ));
    }
    let is_hmac = preset_name == "hmac";
    let is_twilio = preset_name == "twilio";
    for key in map.keys() {
        let known = VERIFY_KEYS.contains(&key.as_str())
            || HMAC_KEYS.contains(&key.as_str())
            || key == "url";
        if !known {
            return Err(format!(
                "verify: unknown key `{}` (known: {}, url for twilio, {} for hmac)",
                shown(key),
                VERIFY_KEYS.join(", "),
                HMAC_KEYS.join(", ")
            ));
        }
        if HMAC_KEYS.contains(&key.as_str()) && !is_hmac {
            return Err(format!("verify.{key} is only for preset hmac"));
        }
        if key == "url" && !is_twilio {
            return Err("verify.url is only for preset twilio".to_owned());
        }
    }
    let preset = match preset_name {
        "github" => Preset::GitHub,
        "gitea" => Preset::Gitea,
        "bitbucket" => Preset::Bitbucket,
        "gitlab" => Preset::GitLab,
        "stripe" => Preset::Stripe,
        "slack" => Preset::Slack,
        "shopify" => Preset::Shopify,
        "standard-webhooks" | "standard_webhooks" | "svix" => Preset::StandardWebhooks,
        "twilio" => Preset::Twilio {
            url: optional_string(map, "url")?
                .map(|url| twilio_url(&url))
                .transpose()?,
        },
        "meta" => Preset::Meta,
        "zoom" => Preset::Zoom,
        "twitch" => Preset::Twitch,
        "dropbox" => Preset::Dropbox,
        "graph" => Preset::Graph,
        _ => Preset::Hmac(hmac_spec(map)?),
    };
    let secrets = match map.get("secret") {
        Some(value) => secret_refs(value, "verify.secret")?,
        None => {
            return Err(format!(
                "verify needs a secret (preset {preset_name} signs with one): \
                 secret: {{datastore: <key>}}, or {{config: <key>}}"
            ));
        }
    };
    let verify_token = match map.get("verify_token") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) if preset != Preset::Meta && handshake != Some(HandshakeKind::Meta) => {
            return Err(
                "verify.verify_token is only for preset meta (or handshake: meta)".to_owned(),
            );
        }
        Some(value) => secret_refs(value, "verify.verify_token")?,
    };
    let tolerance = match map.get("tolerance_secs") {
        None | Some(Value::Null) => DEFAULT_TOLERANCE,
        Some(value) => Duration::from_secs(
            value
                .as_u64()
                .filter(|secs| (1..=MAX_SECS).contains(secs))
                .ok_or_else(|| {
                    format!(
                        "verify.tolerance_secs must be a whole number of seconds, 1 to {MAX_SECS}"
                    )
                })?,
        ),
    };
    let require_api_key = match map.get("require_api_key") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("verify.require_api_key must be true or false".to_owned()),
    };
    Ok(Verify {
        preset,
        secrets,
        verify_token,
        tolerance,
        require_api_key,
    })
}

/// One reference, or a non-empty list of them.
fn secret_refs(value: &Value, key: &str) -> Result<Vec<SecretRef>, String> {
    match value {
        Value::Array(items) if items.is_empty() => Err(format!(
            "{key} needs at least one reference ({{datastore: <key>}} or {{config: <key>}})"
        )),
        Value::Array(items) => items.iter().map(|item| secret_ref(item, key)).collect(),
        other => Ok(vec![secret_ref(other, key)?]),
    }
}

fn secret_ref(value: &Value, key: &str) -> Result<SecretRef, String> {
    let form = "{datastore: <key name>} or {config: <pack config key>}";
    match value {
        // Never repeated in the message: it is the secret.
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Err(format!(
            "{key} must name where the secret is kept, not contain it (rules are shown whole by \
             the API): put the value in the datastore (st2 key set github_webhook_secret <value> \
             --encrypt) and write `secret: {{datastore: github_webhook_secret}}`, or use a key \
             of the pack's config (`secret: {{config: webhook_secret}}`)"
        )),
        Value::Object(map) if map.len() == 1 => {
            let (kind, name) = map
                .iter()
                .next()
                .ok_or_else(|| format!("{key} must be {form}"))?;
            let name = match name {
                Value::String(name) if !name.trim().is_empty() => name.trim().to_owned(),
                _ => return Err(format!("{key}.{kind} must be a non-empty key name")),
            };
            match kind.as_str() {
                "datastore" => Ok(SecretRef::Datastore(name)),
                "config" => Ok(SecretRef::Config(name)),
                other => Err(format!(
                    "{key}: unknown reference `{}` (use {form})",
                    shown(other)
                )),
            }
        }
        _ => Err(format!("{key} must be {form}, or a list of them")),
    }
}

/// The keys of `accept`.
const ACCEPT_KEYS: [&str; 4] = ["get", "any_content_type", "raw_body", "cloudevents"];

fn accept(value: &Value) -> Result<Accept, String> {
    let Value::Object(map) = value else {
        return Err("accept must be a mapping (get: true, ...)".to_owned());
    };
    if let Some(key) = map.keys().find(|k| !ACCEPT_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "accept: unknown key `{}` (known: {})",
            shown(key),
            ACCEPT_KEYS.join(", ")
        ));
    }
    let flag = |key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("accept.{key} must be true or false")),
    };
    Ok(Accept {
        get: flag("get")?,
        any_content_type: flag("any_content_type")?,
        raw_body: flag("raw_body")?,
        cloudevents: flag("cloudevents")?,
    })
}

/// The keys of `respond`.
const RESPOND_KEYS: [&str; 4] = ["entry_point", "timeout_ms", "memory_mb", "store_on_failure"];

fn respond(value: &Value) -> Result<Respond, String> {
    let Value::Object(map) = value else {
        return Err("respond must be a mapping (entry_point: reply.wasm, ...)".to_owned());
    };
    if let Some(key) = map.keys().find(|k| !RESPOND_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "respond: unknown key `{}` (known: {})",
            shown(key),
            RESPOND_KEYS.join(", ")
        ));
    }
    let entry_point = map
        .get("entry_point")
        .and_then(Value::as_str)
        .filter(|name| {
            name.ends_with(".wasm")
                && name.len() > ".wasm".len()
                && !name.contains(['/', '\\'])
                && !name.starts_with('.')
        })
        .ok_or_else(|| {
            "respond.entry_point must be a `.wasm` file name next to the rule file".to_owned()
        })?
        .to_owned();
    let number = |key: &str, max: u64| -> Result<Option<u64>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .filter(|n| (1..=max).contains(n))
                .map(Some)
                .ok_or_else(|| format!("respond.{key} must be a whole number from 1 to {max}")),
        }
    };
    let store_on_failure = match map.get("store_on_failure") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("respond.store_on_failure must be true or false".to_owned()),
    };
    Ok(Respond {
        entry_point,
        timeout_ms: number("timeout_ms", 30_000)?,
        memory_mb: number("memory_mb", 4096)?,
        store_on_failure,
    })
}

fn replay(value: &Value) -> Result<Replay, String> {
    let Value::Object(map) = value else {
        return Err("replay must be a mapping (window_secs: ..., header: ...)".to_owned());
    };
    if let Some(key) = map.keys().find(|k| !REPLAY_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "replay: unknown key `{}` (known: {})",
            shown(key),
            REPLAY_KEYS.join(", ")
        ));
    }
    let window = match map.get("window_secs") {
        None | Some(Value::Null) => DEFAULT_REPLAY_WINDOW,
        Some(value) => Duration::from_secs(
            value
                .as_u64()
                .filter(|secs| *secs <= MAX_SECS)
                .ok_or_else(|| {
                    format!(
                        "replay.window_secs must be a whole number of seconds, 0 (off) to {MAX_SECS}"
                    )
                })?,
        ),
    };
    let header = optional_string(map, "header")
        .map_err(|_| "replay.header must be a header name".to_owned())?
        .map(|name| header_name(&name, "replay.header"))
        .transpose()?;
    Ok(Replay { window, header })
}

fn hmac_spec(map: &Map<String, Value>) -> Result<HmacSpec, String> {
    let header = optional_string(map, "header")?.ok_or_else(|| {
        "verify.header is required for preset hmac (the signature's header)".to_owned()
    })?;
    let header = header_name(&header, "verify.header")?;
    let algorithm = match optional_string(map, "algorithm")?.as_deref() {
        None | Some("sha256") => Algorithm::Sha256,
        Some("sha1") => Algorithm::Sha1,
        Some("sha512") => Algorithm::Sha512,
        Some(other) => {
            return Err(format!(
                "verify.algorithm: unknown algorithm `{}` (known: sha1, sha256, sha512)",
                shown(other)
            ));
        }
    };
    let encoding = match optional_string(map, "encoding")?.as_deref() {
        None | Some("hex") => Encoding::Hex,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(format!(
                "verify.encoding: unknown encoding `{}` (known: hex, base64)",
                shown(other)
            ));
        }
    };
    let prefix = optional_string(map, "prefix")?.unwrap_or_default();
    let signed = optional_string(map, "signed")?.unwrap_or_else(|| "{body}".to_owned());
    crate::verify::template::check(&signed).map_err(|e| format!("verify.signed: {e}"))?;
    let timestamp_header = optional_string(map, "timestamp_header")?
        .map(|name| header_name(&name, "verify.timestamp_header"))
        .transpose()?;
    Ok(HmacSpec {
        header,
        algorithm,
        encoding,
        prefix,
        signed,
        timestamp_header,
    })
}

/// `verify.<key>` as a string, if present.
fn optional_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("verify.{key} must be a string")),
    }
}

/// A valid HTTP header name.
fn header_name(name: &str, key: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{key} must be an HTTP header name"));
    }
    Ok(name.to_owned())
}

/// Twilio's URL: absolute http(s).
fn twilio_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let ok = ["https://", "http://"].iter().any(|scheme| {
        crate::util::strip_prefix_ignore_case(url, scheme).is_some_and(|rest| {
            !rest.is_empty() && !rest.starts_with('/') && !rest.chars().any(char::is_whitespace)
        })
    });
    if ok {
        Ok(url.to_owned())
    } else {
        Err("verify.url must be the absolute URL Twilio was given (https://host/path)".to_owned())
    }
}

/// A user-written name, for an error message: bounded and without control characters.
fn shown(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(64).collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}
