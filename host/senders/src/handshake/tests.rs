//! Each handshake answered as its provider documents it: status, content type, body.

use std::time::Duration;

use http::HeaderMap;

use crate::test_headers as headers;

use super::*;
use crate::{Accept, Preset, Replay, SecretRef, Verify};

fn policy(preset: Option<Preset>, handshake: Option<HandshakeKind>) -> HookPolicy {
    let verify = preset.map(|preset| Verify {
        preset,
        secrets: vec![SecretRef::Datastore("secret".into())],
        verify_token: vec![SecretRef::Datastore("token".into())],
        tolerance: Duration::from_secs(300),
        require_api_key: false,
    });
    let handshake = handshake.or_else(|| verify.as_ref().and_then(|v| v.preset.handshake()));
    HookPolicy {
        verify,
        replay: Replay {
            window: Duration::from_secs(86_400),
            header: None,
        },
        handshake,
        store_handshakes: false,
        respond: None,
        accept: Accept::default(),
    }
}

fn secrets(signing: &[&str], tokens: &[&str]) -> Secrets {
    Secrets {
        signing: signing.iter().map(|s| s.as_bytes().to_vec()).collect(),
        verify_token: tokens.iter().map(|s| s.as_bytes().to_vec()).collect(),
    }
}

struct Request<'a> {
    method: &'a str,
    url: &'a str,
    headers: HeaderMap,
    body: &'a [u8],
    now: i64,
}

impl Request<'_> {
    fn answer(&self, policy: &HookPolicy, secrets: &Secrets) -> Option<Result<Answer, Refusal>> {
        let delivery = Delivery {
            method: self.method,
            url: self.url,
            headers: &self.headers,
            body: self.body,
            now: self.now,
        };
        handshake(policy, &delivery, secrets)
    }
}

fn get(url: &str) -> Request<'_> {
    Request {
        method: "GET",
        url,
        headers: HeaderMap::new(),
        body: b"",
        now: 0,
    }
}

fn post<'a>(url: &'a str, pairs: &[(&str, &str)], body: &'a [u8], now: i64) -> Request<'a> {
    Request {
        method: "POST",
        url,
        headers: headers(pairs),
        body,
        now,
    }
}

fn text(body: &str) -> Answer {
    Answer {
        status: 200,
        content_type: "text/plain",
        headers: vec![("X-Content-Type-Options", "nosniff".to_owned())],
        body: body.as_bytes().to_vec(),
    }
}

const URL: &str = "https://hooks.example.com/api/v1/webhooks/test";

// ----------------------------------------------------------------------------------- Slack

/// Slack's `url_verification` example payload, signed with the signing secret of Slack's
/// "Verifying requests" example (signature computed with Python's hmac module).
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_CHALLENGE_BODY: &[u8] = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
const SLACK_CHALLENGE_SIG: &str =
    "v0=f9bd80929259f3f6d5fe3a3186c453c89cd1ad4862815a15837584f31c993652";

#[test]
fn slack_url_verification() {
    let policy = policy(Some(Preset::Slack), None);
    let s = secrets(&[SLACK_SECRET], &[]);
    let signed = [
        ("X-Slack-Signature", SLACK_CHALLENGE_SIG),
        ("X-Slack-Request-Timestamp", "1531420618"),
        ("Content-Type", "application/json"),
    ];
    let request = post(URL, &signed, SLACK_CHALLENGE_BODY, 1_531_420_620);
    assert_eq!(
        request.answer(&policy, &s),
        Some(Ok(text(
            "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        )))
    );
    // Unsigned, or signed with another secret: refused.
    let request = post(URL, &[], SLACK_CHALLENGE_BODY, 1_531_420_620);
    assert_eq!(
        request.answer(&policy, &s),
        Some(Err(Refusal::MissingHeader("X-Slack-Signature".into())))
    );
    let request = post(URL, &signed, SLACK_CHALLENGE_BODY, 1_531_420_620);
    assert_eq!(
        request.answer(&policy, &secrets(&["other"], &[])),
        Some(Err(Refusal::BadSignature("X-Slack-Signature".into())))
    );
    // Expired.
    let request = post(URL, &signed, SLACK_CHALLENGE_BODY, 1_531_430_000);
    assert!(matches!(
        request.answer(&policy, &s),
        Some(Err(Refusal::Expired { .. }))
    ));
    // With `handshake: slack` and no verify: answered without a signature check.
    let bare = self::policy(None, Some(HandshakeKind::Slack));
    let request = post(URL, &[], SLACK_CHALLENGE_BODY, 0);
    assert_eq!(
        request.answer(&bare, &Secrets::default()),
        Some(Ok(text(
            "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        )))
    );
    // Not a handshake: an event, a form (slash command), a GET.
    let event = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message","text":"url_verification"}}"#;
    assert_eq!(post(URL, &[], event, 0).answer(&policy, &s), None);
    assert_eq!(
        post(URL, &[], b"command=%2Furl_verification", 0).answer(&policy, &s),
        None
    );
    assert_eq!(get(URL).answer(&policy, &s), None);
    // A url_verification without its challenge.
    let request = post(URL, &[], br#"{"type":"url_verification"}"#, 0);
    assert!(matches!(
        request.answer(&bare, &s),
        Some(Err(Refusal::BadBody(_)))
    ));
}

// ------------------------------------------------------------------------------------ Meta

#[test]
fn meta_subscription() {
    let policy = policy(Some(Preset::Meta), None);
    let s = secrets(&["app secret"], &["old token", "meta verify token"]);
    let url = "https://hooks.example.com/api/v1/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meta+verify+token";
    assert_eq!(get(url).answer(&policy, &s), Some(Ok(text("1158201444"))));
    let wrong = "https://hooks.example.com/api/v1/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess";
    assert_eq!(
        get(wrong).answer(&policy, &s),
        Some(Err(Refusal::BadToken("hub.verify_token".into())))
    );
    let absent = "https://hooks.example.com/api/v1/webhooks/meta?hub.mode=subscribe&hub.challenge=1158201444";
    assert_eq!(
        get(absent).answer(&policy, &s),
        Some(Err(Refusal::BadToken("hub.verify_token".into())))
    );
    // No verify token configured: refused.
    assert_eq!(
        get(url).answer(&policy, &secrets(&["app secret"], &[])),
        Some(Err(Refusal::NoSecret))
    );
    // The signing secret is not a verify token.
    let by_secret = "https://hooks.example.com/api/v1/webhooks/meta?hub.mode=subscribe&hub.challenge=1&hub.verify_token=app+secret";
    assert_eq!(
        get(by_secret).answer(&policy, &s),
        Some(Err(Refusal::BadToken("hub.verify_token".into())))
    );
    // Not the handshake: another mode, a POST (an ordinary delivery), no query.
    let other_mode = "https://hooks.example.com/api/v1/webhooks/meta?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=meta+verify+token";
    assert_eq!(get(other_mode).answer(&policy, &s), None);
    assert_eq!(post(url, &[], b"{}", 0).answer(&policy, &s), None);
    assert_eq!(get(URL).answer(&policy, &s), None);
}

// ----------------------------------------------------------------------------------- Graph

#[test]
fn graph_validation() {
    let policy = policy(Some(Preset::Graph), None);
    let s = secrets(&["client state"], &[]);
    // Graph sends the token URL-encoded, and wants it back decoded, as text/plain.
    let url = "https://hooks.example.com/api/v1/webhooks/graph?validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+Request-Id%3a+b8c94c3a-5a0a-4d4d-9c0c-1e3b7e0d1a2b";
    let expected = text(
        "Validation: Testing client application reachability for subscription Request-Id: b8c94c3a-5a0a-4d4d-9c0c-1e3b7e0d1a2b",
    );
    assert_eq!(
        post(url, &[], b"", 0).answer(&policy, &s),
        Some(Ok(expected.clone()))
    );
    assert_eq!(get(url).answer(&policy, &s), Some(Ok(expected)));
    // Markup comes back as plain text, not sniffed.
    let url = "https://hooks.example.com/x?validationToken=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let answer = get(url).answer(&policy, &s).unwrap().unwrap();
    assert_eq!(answer.content_type, "text/plain");
    assert_eq!(
        answer.headers,
        vec![("X-Content-Type-Options", "nosniff".to_owned())]
    );
    assert_eq!(answer.body, b"<script>alert(1)</script>");
    // A notification is not a handshake.
    assert_eq!(
        post(URL, &[], br#"{"value":[]}"#, 0).answer(&policy, &s),
        None
    );
    // `handshake: graph` alone.
    let bare = self::policy(None, Some(HandshakeKind::Graph));
    let url = "https://hooks.example.com/x?validationToken=abc";
    assert_eq!(
        post(url, &[], b"", 0).answer(&bare, &Secrets::default()),
        Some(Ok(text("abc")))
    );
}

// ------------------------------------------------------------------------------------ Zoom

const ZOOM_VALIDATION: &[u8] = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1700000000123,"event":"endpoint.url_validation"}"#;
const ZOOM_VALIDATION_SIG: &str =
    "v0=f5d4ee319fd66faadd3b93e0059066e5bcac7b0fef71df28343fd12bde78ccf3";

fn zoom_json(encrypted: &str) -> Answer {
    Answer {
        status: 200,
        content_type: "application/json",
        headers: vec![],
        body: format!(
            r#"{{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"{encrypted}"}}"#
        )
        .into_bytes(),
    }
}

#[test]
fn zoom_url_validation() {
    let policy = policy(Some(Preset::Zoom), None);
    let s = secrets(&["zoom secret token"], &[]);
    let signed = [
        ("x-zm-signature", ZOOM_VALIDATION_SIG),
        ("x-zm-request-timestamp", "1700000000"),
    ];
    let request = post(URL, &signed, ZOOM_VALIDATION, 1_700_000_001);
    let answer = zoom_json("39b8dfc472156d09751ff95badb7c9dfc4e81295a8dd72928ab3e7f6b3f48769");
    assert_eq!(request.answer(&policy, &s), Some(Ok(answer.clone())));
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    // The signature is checked first.
    let request = post(URL, &signed, ZOOM_VALIDATION, 1_700_000_001);
    assert_eq!(
        request.answer(&policy, &secrets(&["zoom secret token 2"], &[])),
        Some(Err(Refusal::BadSignature("x-zm-signature".into())))
    );
    let request = post(URL, &signed[1..], ZOOM_VALIDATION, 1_700_000_001);
    assert_eq!(
        request.answer(&policy, &s),
        Some(Err(Refusal::MissingHeader("x-zm-signature".into())))
    );
    // During a rotation the signature may match the second secret; the encryptedToken uses the
    // secret that verified (the one Zoom still has), never the other (784701a3... is the HMAC
    // under "zoom secret token 2").
    let request = post(URL, &signed, ZOOM_VALIDATION, 1_700_000_001);
    assert_eq!(
        request.answer(
            &policy,
            &secrets(&["zoom secret token 2", "zoom secret token"], &[])
        ),
        Some(Ok(answer))
    );
    // `handshake: zoom` without verify: nothing verified, so no secret is used.
    let bare = self::policy(None, Some(HandshakeKind::Zoom));
    let request = post(URL, &[], ZOOM_VALIDATION, 0);
    assert_eq!(
        request.answer(&bare, &secrets(&["zoom secret token"], &[])),
        Some(Err(Refusal::NoSecret))
    );
    // No plainToken.
    let request = post(
        URL,
        &[],
        br#"{"event":"endpoint.url_validation","payload":{}}"#,
        0,
    );
    assert!(matches!(
        request.answer(&bare, &secrets(&["k"], &[])),
        Some(Err(Refusal::BadBody(_)))
    ));
    // An ordinary event is not the handshake.
    let event = br#"{"event":"meeting.started","payload":{}}"#;
    assert_eq!(post(URL, &[], event, 0).answer(&policy, &s), None);
}

// ---------------------------------------------------------------------------------- Twitch

const TWITCH_VERIFICATION: &[u8] = br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"type":"channel.follow","version":"2"}}"#;

fn twitch_headers<'a>(kind: &'a str, sig: &'a str) -> [(&'a str, &'a str); 4] {
    [
        (
            "Twitch-Eventsub-Message-Id",
            "e76c6bd4-55c9-4987-8304-da1588d8988b",
        ),
        (
            "Twitch-Eventsub-Message-Timestamp",
            "2023-11-14T22:13:20.123456789Z",
        ),
        ("Twitch-Eventsub-Message-Signature", sig),
        ("Twitch-Eventsub-Message-Type", kind),
    ]
}

#[test]
fn twitch_callback_verification() {
    let policy = policy(Some(Preset::Twitch), None);
    let s = secrets(&["twitch secret 1234"], &[]);
    let sig = "sha256=1520e28e9618f316b6b2c2a392667627a86746e423f782cc7c95899484992fa3";
    let h = twitch_headers("webhook_callback_verification", sig);
    let request = post(URL, &h, TWITCH_VERIFICATION, 1_700_000_000);
    assert_eq!(
        request.answer(&policy, &s),
        Some(Ok(text("pogchamp-kappa-360noscope-vohiyo")))
    );
    assert_eq!(
        request.answer(&policy, &secrets(&["another"], &[])),
        Some(Err(Refusal::BadSignature(
            "Twitch-Eventsub-Message-Signature".into()
        )))
    );
    let late = post(URL, &h, TWITCH_VERIFICATION, 1_700_000_000 + 3600);
    assert!(matches!(
        late.answer(&policy, &s),
        Some(Err(Refusal::Expired { .. }))
    ));
    // A notification or a revocation is not the handshake.
    let h = twitch_headers("notification", sig);
    assert_eq!(
        post(URL, &h, TWITCH_VERIFICATION, 1_700_000_000).answer(&policy, &s),
        None
    );
    assert_eq!(
        post(URL, &[], TWITCH_VERIFICATION, 1_700_000_000).answer(&policy, &s),
        None
    );
    // `handshake: twitch` alone: no signature check.
    let bare = self::policy(None, Some(HandshakeKind::Twitch));
    let h = [(
        "Twitch-Eventsub-Message-Type",
        "webhook_callback_verification",
    )];
    let request = post(URL, &h, TWITCH_VERIFICATION, 0);
    assert_eq!(
        request.answer(&bare, &Secrets::default()),
        Some(Ok(text("pogchamp-kappa-360noscope-vohiyo")))
    );
    let request = post(URL, &h, b"{}", 0);
    assert!(matches!(
        request.answer(&bare, &Secrets::default()),
        Some(Err(Refusal::BadBody(_)))
    ));
}

// --------------------------------------------------------------------------------- Dropbox

#[test]
fn dropbox_challenge() {
    let policy = policy(Some(Preset::Dropbox), None);
    let s = secrets(&["dropbox app secret"], &[]);
    let url = "https://hooks.example.com/api/v1/webhooks/dropbox?challenge=sdoif8h3ohfsoqiuw";
    assert_eq!(
        get(url).answer(&policy, &s),
        Some(Ok(Answer {
            status: 200,
            content_type: "text/plain",
            headers: vec![("X-Content-Type-Options", "nosniff".to_owned())],
            body: b"sdoif8h3ohfsoqiuw".to_vec(),
        }))
    );
    // A notification (POST) is verified as a delivery, not answered here.
    assert_eq!(post(url, &[], b"{}", 0).answer(&policy, &s), None);
    assert_eq!(get(URL).answer(&policy, &s), None);
}

#[test]
fn no_handshake_no_answer() {
    let policy = policy(Some(Preset::GitHub), None);
    let s = secrets(&["k"], &[]);
    let url = "https://hooks.example.com/x?challenge=1&validationToken=2&hub.mode=subscribe&hub.challenge=3";
    assert_eq!(get(url).answer(&policy, &s), None);
    assert_eq!(
        post(url, &[], SLACK_CHALLENGE_BODY, 0).answer(&policy, &s),
        None
    );
    assert_eq!(post(URL, &[], ZOOM_VALIDATION, 0).answer(&policy, &s), None);
}

#[test]
fn handshakes_do_not_panic_on_odd_input() {
    let kinds = [
        HandshakeKind::Slack,
        HandshakeKind::Meta,
        HandshakeKind::Graph,
        HandshakeKind::Zoom,
        HandshakeKind::Twitch,
        HandshakeKind::Dropbox,
    ];
    let bodies: [&[u8]; 6] = [
        b"",
        b"\xff\xfe",
        br#"{"type":"url_verification","challenge":5}"#,
        br#"{"event":"endpoint.url_validation","payload":"x"}"#,
        br#"["url_verification","endpoint.url_validation","challenge"]"#,
        br#"{"challenge":null}"#,
    ];
    let urls = [
        "",
        "?",
        "é?é=é&hub.mode=subscribe&hub.challenge=%ff",
        "x?challenge=%zz&validationToken=%",
    ];
    for kind in kinds {
        for preset in [None, Some(Preset::Zoom)] {
            let policy = policy(preset, Some(kind));
            for body in bodies {
                for url in urls {
                    for method in ["GET", "POST"] {
                        let request = Request {
                            method,
                            url,
                            headers: headers(&[(
                                "Twitch-Eventsub-Message-Type",
                                "webhook_callback_verification",
                            )]),
                            body,
                            now: 0,
                        };
                        let _ = request.answer(&policy, &secrets(&[""], &[""]));
                    }
                }
            }
        }
    }
}
