//! Each preset against its provider's published example where there is one; otherwise against
//! a signature computed outside this crate (Python's `hmac` module) from the provider's
//! documented formula, written here as a literal.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::test_headers as headers;

use super::*;
use crate::{Accept, Replay, SecretRef};

const URL: &str = "https://hooks.example.com/api/v1/webhooks/test";

fn delivery<'a>(headers: &'a HeaderMap, body: &'a [u8], now: i64) -> Delivery<'a> {
    Delivery {
        method: "POST",
        url: URL,
        headers,
        body,
        now,
    }
}

fn policy(preset: Preset) -> Verify {
    Verify {
        preset,
        secrets: vec![SecretRef::Datastore("secret".into())],
        verify_token: Vec::new(),
        tolerance: Duration::from_secs(300),
        require_api_key: false,
    }
}

fn secrets(values: &[&str]) -> Secrets {
    Secrets {
        signing: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
        verify_token: Vec::new(),
    }
}

fn check(
    preset: Preset,
    pairs: &[(&str, &str)],
    body: &[u8],
    now: i64,
    keys: &[&str],
) -> Result<(), Refusal> {
    let map = headers(pairs);
    verify(&policy(preset), &delivery(&map, body, now), &secrets(keys))
}

fn missing(header: &str) -> Result<(), Refusal> {
    Err(Refusal::MissingHeader(header.into()))
}

fn bad(header: &str) -> Result<(), Refusal> {
    Err(Refusal::BadSignature(header.into()))
}

fn expired(header: &str) -> Result<(), Refusal> {
    Err(Refusal::Expired {
        header: header.into(),
        tolerance_secs: 300,
    })
}

fn is_malformed(result: Result<(), Refusal>, header: &str) -> bool {
    matches!(result, Err(Refusal::Malformed { header: h, .. }) if h == header)
}

// ---------------------------------------------------------------------------------- GitHub

/// GitHub's docs ("Validating webhook deliveries"): secret "It's a Secret to Everybody",
/// payload "Hello, World!".
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
const HELLO: &[u8] = b"Hello, World!";

#[test]
fn github_published_example() {
    let h = [("X-Hub-Signature-256", GITHUB_SIGNATURE)];
    assert_eq!(
        check(Preset::GitHub, &h, HELLO, 0, &[GITHUB_SECRET]),
        Ok(())
    );
    // Upper-case hex is the same signature.
    let upper = GITHUB_SIGNATURE.to_uppercase();
    let h = [("X-Hub-Signature-256", upper.as_str())];
    assert_eq!(
        check(Preset::GitHub, &h, HELLO, 0, &[GITHUB_SECRET]),
        Ok(())
    );
}

#[test]
fn github_refusals() {
    let h = [("X-Hub-Signature-256", GITHUB_SIGNATURE)];
    assert_eq!(
        check(Preset::GitHub, &h, b"Hello, World?", 0, &[GITHUB_SECRET]),
        bad("X-Hub-Signature-256")
    );
    assert_eq!(
        check(Preset::GitHub, &h, HELLO, 0, &["another secret"]),
        bad("X-Hub-Signature-256")
    );
    assert_eq!(
        check(Preset::GitHub, &[], HELLO, 0, &[GITHUB_SECRET]),
        missing("X-Hub-Signature-256")
    );
    assert_eq!(
        check(
            Preset::GitHub,
            &[("X-Hub-Signature-256", "")],
            HELLO,
            0,
            &[GITHUB_SECRET]
        ),
        missing("X-Hub-Signature-256")
    );
    for malformed in [
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e",
        "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=",
        "sha256",
    ] {
        let h = [("X-Hub-Signature-256", malformed)];
        assert!(
            is_malformed(
                check(Preset::GitHub, &h, HELLO, 0, &[GITHUB_SECRET]),
                "X-Hub-Signature-256"
            ),
            "{malformed}"
        );
    }
    // No secret value: refused whatever the headers.
    assert_eq!(
        check(Preset::GitHub, &h, HELLO, 0, &[]),
        Err(Refusal::NoSecret)
    );
    assert_eq!(
        check(Preset::GitHub, &h, HELLO, 0, &[""]),
        Err(Refusal::NoSecret)
    );
}

#[test]
fn github_rotation() {
    // Signed with the new secret: the second of the two matches; the old one alone does not.
    let h = [(
        "X-Hub-Signature-256",
        "sha256=e82415efc3aac26d58147990db281872a9eb819065ab6b085552ccf79c86586b",
    )];
    assert_eq!(
        check(Preset::GitHub, &h, HELLO, 0, &[GITHUB_SECRET, "new secret"]),
        Ok(())
    );
    assert_eq!(
        check(Preset::GitHub, &h, HELLO, 0, &[GITHUB_SECRET]),
        bad("X-Hub-Signature-256")
    );
    // And the old signature still passes during the rotation.
    let h = [("X-Hub-Signature-256", GITHUB_SIGNATURE)];
    assert_eq!(
        check(Preset::GitHub, &h, HELLO, 0, &["new secret", GITHUB_SECRET]),
        Ok(())
    );
}

#[test]
fn meta_is_githubs_scheme_with_the_app_secret() {
    let h = [("X-Hub-Signature-256", GITHUB_SIGNATURE)];
    assert_eq!(check(Preset::Meta, &h, HELLO, 0, &[GITHUB_SECRET]), Ok(()));
    assert_eq!(
        check(Preset::Meta, &h, b"tampered", 0, &[GITHUB_SECRET]),
        bad("X-Hub-Signature-256")
    );
    assert_eq!(
        check(Preset::Meta, &[], HELLO, 0, &[GITHUB_SECRET]),
        missing("X-Hub-Signature-256")
    );
    assert!(is_malformed(
        check(
            Preset::Meta,
            &[("X-Hub-Signature-256", "sha256=xyz")],
            HELLO,
            0,
            &[GITHUB_SECRET]
        ),
        "X-Hub-Signature-256"
    ));
    assert_eq!(
        check(
            Preset::Meta,
            &h,
            HELLO,
            0,
            &["new app secret", GITHUB_SECRET]
        ),
        Ok(())
    );
}

// ----------------------------------------------------------------------- Gitea, Bitbucket

const GITEA_BODY: &[u8] = br#"{"ref":"refs/heads/main","repository":{"full_name":"org/repo"}}"#;
const GITEA_SIG: &str = "b360740559069cce4ff6ed0e77c250e14c04136037167a1adecd54c4a552ad75";
const GITEA_SIG_2: &str = "bdf933f3c725ed2d656136f0047b7f25bddb7f00bad3d7235afe71cc4f69bc65";

#[test]
fn gitea() {
    let s = &["gitea secret"];
    assert_eq!(
        check(
            Preset::Gitea,
            &[("X-Gitea-Signature", GITEA_SIG)],
            GITEA_BODY,
            0,
            s
        ),
        Ok(())
    );
    // Forgejo's header, and GitHub's (which Gitea sends as well).
    assert_eq!(
        check(
            Preset::Gitea,
            &[("X-Forgejo-Signature", GITEA_SIG)],
            GITEA_BODY,
            0,
            s
        ),
        Ok(())
    );
    let github_form = format!("sha256={GITEA_SIG}");
    assert_eq!(
        check(
            Preset::Gitea,
            &[("X-Hub-Signature-256", &github_form)],
            GITEA_BODY,
            0,
            s
        ),
        Ok(())
    );
    assert_eq!(
        check(
            Preset::Gitea,
            &[("X-Gitea-Signature", GITEA_SIG)],
            b"{}",
            0,
            s
        ),
        bad("X-Gitea-Signature")
    );
    assert_eq!(
        check(Preset::Gitea, &[], GITEA_BODY, 0, s),
        missing("X-Gitea-Signature")
    );
    assert!(is_malformed(
        check(
            Preset::Gitea,
            &[("X-Gitea-Signature", &github_form)],
            GITEA_BODY,
            0,
            s
        ),
        "X-Gitea-Signature"
    ));
    // Rotation.
    let h = [("X-Gitea-Signature", GITEA_SIG_2)];
    assert_eq!(
        check(
            Preset::Gitea,
            &h,
            GITEA_BODY,
            0,
            &["gitea secret", "gitea secret 2"]
        ),
        Ok(())
    );
    assert_eq!(
        check(Preset::Gitea, &h, GITEA_BODY, 0, s),
        bad("X-Gitea-Signature")
    );
}

const BITBUCKET_BODY: &[u8] = br#"{"push":{"changes":[]},"repository":{"full_name":"team/repo"}}"#;

#[test]
fn bitbucket() {
    let sig = "sha256=25c700793e257a4b1fc1afc1f5ce7b4975155b5ff6849c968ecf5d4e873539b8";
    let sig2 = "sha256=67ea5d6360131525ba6ed322c6ca6e2518b47134db214eaab29c15e3737efd35";
    let s = &["bitbucket secret"];
    let h = [("X-Hub-Signature", sig)];
    assert_eq!(check(Preset::Bitbucket, &h, BITBUCKET_BODY, 0, s), Ok(()));
    assert_eq!(
        check(Preset::Bitbucket, &h, b"{}", 0, s),
        bad("X-Hub-Signature")
    );
    // GitHub's header is not Bitbucket's.
    assert_eq!(
        check(
            Preset::Bitbucket,
            &[("X-Hub-Signature-256", sig)],
            BITBUCKET_BODY,
            0,
            s
        ),
        missing("X-Hub-Signature")
    );
    assert!(is_malformed(
        check(
            Preset::Bitbucket,
            &[("X-Hub-Signature", "sha1=0123")],
            BITBUCKET_BODY,
            0,
            s
        ),
        "X-Hub-Signature"
    ));
    let h = [("X-Hub-Signature", sig2)];
    assert_eq!(
        check(
            Preset::Bitbucket,
            &h,
            BITBUCKET_BODY,
            0,
            &["bitbucket secret", "bitbucket secret 2"]
        ),
        Ok(())
    );
    assert_eq!(
        check(Preset::Bitbucket, &h, BITBUCKET_BODY, 0, s),
        bad("X-Hub-Signature")
    );
}

// ---------------------------------------------------------------------------------- GitLab

#[test]
fn gitlab() {
    let h = [("X-Gitlab-Token", "gitlab token")];
    assert_eq!(
        check(Preset::GitLab, &h, b"{}", 0, &["gitlab token"]),
        Ok(())
    );
    // The body is not signed: any body passes with the right token.
    assert_eq!(
        check(Preset::GitLab, &h, b"anything", 0, &["gitlab token"]),
        Ok(())
    );
    assert_eq!(
        check(Preset::GitLab, &h, b"{}", 0, &["gitlab token!"]),
        Err(Refusal::BadToken("X-Gitlab-Token".into()))
    );
    assert_eq!(
        check(
            Preset::GitLab,
            &[("X-Gitlab-Token", "gitlab")],
            b"{}",
            0,
            &["gitlab token"]
        ),
        Err(Refusal::BadToken("X-Gitlab-Token".into()))
    );
    assert_eq!(
        check(Preset::GitLab, &[], b"{}", 0, &["gitlab token"]),
        missing("X-Gitlab-Token")
    );
    // Rotation.
    assert_eq!(
        check(Preset::GitLab, &h, b"{}", 0, &["old token", "gitlab token"]),
        Ok(())
    );
    assert_eq!(
        check(Preset::GitLab, &h, b"{}", 0, &["old token"]),
        Err(Refusal::BadToken("X-Gitlab-Token".into()))
    );
}

// ---------------------------------------------------------------------------------- Stripe

const STRIPE_BODY: &[u8] =
    br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"charge.succeeded"}"#;
const STRIPE_V1: &str = "ea0a8c6df020a098fd57a17f7b76d3bb047829a08e9b0b1bfe25c016a3f34c61";
const STRIPE_V1_ROTATED: &str = "9d71a7706f12fb9ff9614b1535e903eb6ff028e64bb1c33b90b75a6907da85db";

#[test]
fn stripe_valid() {
    let header = format!(
        "t=1700000000,v1={STRIPE_V1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    );
    let h = [("Stripe-Signature", header.as_str())];
    // The secret is used whole, `whsec_` included.
    assert_eq!(
        check(
            Preset::Stripe,
            &h,
            STRIPE_BODY,
            1_700_000_100,
            &["whsec_test_secret"]
        ),
        Ok(())
    );
    assert_eq!(
        check(
            Preset::Stripe,
            &h,
            STRIPE_BODY,
            1_700_000_100,
            &["test_secret"]
        ),
        bad("Stripe-Signature")
    );
    // Spaces after the commas, and the v1 that matches second.
    let header = format!("t=1700000000, v1={STRIPE_V1_ROTATED}, v1={STRIPE_V1}");
    let h = [("Stripe-Signature", header.as_str())];
    assert_eq!(
        check(
            Preset::Stripe,
            &h,
            STRIPE_BODY,
            1_700_000_000,
            &["whsec_test_secret"]
        ),
        Ok(())
    );
}

#[test]
fn stripe_refusals() {
    let header = format!("t=1700000000,v1={STRIPE_V1}");
    let h = [("Stripe-Signature", header.as_str())];
    let s = &["whsec_test_secret"];
    assert_eq!(
        check(
            Preset::Stripe,
            &h,
            b"{\"id\":\"evt_other\"}",
            1_700_000_000,
            s
        ),
        bad("Stripe-Signature")
    );
    assert_eq!(
        check(Preset::Stripe, &h, STRIPE_BODY, 1_700_000_301, s),
        expired("Stripe-Signature")
    );
    assert_eq!(
        check(Preset::Stripe, &h, STRIPE_BODY, 1_699_999_699, s),
        expired("Stripe-Signature")
    );
    assert_eq!(
        check(Preset::Stripe, &h, STRIPE_BODY, 1_700_000_300, s),
        Ok(())
    );
    // The timestamp is signed: moving it breaks the signature.
    let moved = format!("t=1700000001,v1={STRIPE_V1}");
    assert_eq!(
        check(
            Preset::Stripe,
            &[("Stripe-Signature", &moved)],
            STRIPE_BODY,
            1_700_000_000,
            s
        ),
        bad("Stripe-Signature")
    );
    assert_eq!(
        check(Preset::Stripe, &[], STRIPE_BODY, 1_700_000_000, s),
        missing("Stripe-Signature")
    );
    let no_t = format!("v1={STRIPE_V1}");
    let bad_t = format!("t=soon,v1={STRIPE_V1}");
    for malformed in [
        no_t.as_str(),
        "t=1700000000",
        bad_t.as_str(),
        "t=1700000000,v0=abcd",
        "garbage",
    ] {
        let result = check(
            Preset::Stripe,
            &[("Stripe-Signature", malformed)],
            STRIPE_BODY,
            1_700_000_000,
            s,
        );
        assert_eq!(
            result,
            Err(Refusal::Malformed {
                header: "Stripe-Signature".into(),
                expected: "t=<timestamp>,v1=<hex signature>".into()
            }),
            "{malformed}"
        );
    }
    // A v1 that is not hex is no match (not an error of format: Stripe skips it).
    assert_eq!(
        check(
            Preset::Stripe,
            &[("Stripe-Signature", "t=1700000000,v1=nothex")],
            STRIPE_BODY,
            1_700_000_000,
            s
        ),
        bad("Stripe-Signature")
    );
}

#[test]
fn stripe_rotation() {
    let header = format!("t=1700000000,v1={STRIPE_V1_ROTATED}");
    let h = [("Stripe-Signature", header.as_str())];
    assert_eq!(
        check(
            Preset::Stripe,
            &h,
            STRIPE_BODY,
            1_700_000_000,
            &["whsec_test_secret", "whsec_rotated_secret"]
        ),
        Ok(())
    );
    assert_eq!(
        check(
            Preset::Stripe,
            &h,
            STRIPE_BODY,
            1_700_000_000,
            &["whsec_test_secret"]
        ),
        bad("Stripe-Signature")
    );
}

// ----------------------------------------------------------------------------------- Slack

/// Slack's docs ("Verifying requests from Slack").
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: &str = "1531420618";
const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
const SLACK_NOW: i64 = 1_531_420_618;

#[test]
fn slack_published_example() {
    let h = [
        ("X-Slack-Signature", SLACK_SIG),
        ("X-Slack-Request-Timestamp", SLACK_TS),
    ];
    assert_eq!(
        check(
            Preset::Slack,
            &h,
            SLACK_BODY,
            SLACK_NOW + 10,
            &[SLACK_SECRET]
        ),
        Ok(())
    );
}

#[test]
fn slack_refusals() {
    let h = [
        ("X-Slack-Signature", SLACK_SIG),
        ("X-Slack-Request-Timestamp", SLACK_TS),
    ];
    let s = &[SLACK_SECRET];
    let mut tampered = SLACK_BODY.to_vec();
    tampered.push(b'x');
    assert_eq!(
        check(Preset::Slack, &h, &tampered, SLACK_NOW, s),
        bad("X-Slack-Signature")
    );
    assert_eq!(
        check(Preset::Slack, &h, SLACK_BODY, SLACK_NOW + 301, s),
        expired("X-Slack-Request-Timestamp")
    );
    assert_eq!(
        check(Preset::Slack, &h, SLACK_BODY, SLACK_NOW - 301, s),
        expired("X-Slack-Request-Timestamp")
    );
    // A replayed signature with a fresh timestamp does not match.
    let fresh = [
        ("X-Slack-Signature", SLACK_SIG),
        ("X-Slack-Request-Timestamp", "1531420918"),
    ];
    assert_eq!(
        check(Preset::Slack, &fresh, SLACK_BODY, 1_531_420_918, s),
        bad("X-Slack-Signature")
    );
    assert_eq!(
        check(
            Preset::Slack,
            &[("X-Slack-Request-Timestamp", SLACK_TS)],
            SLACK_BODY,
            SLACK_NOW,
            s
        ),
        missing("X-Slack-Signature")
    );
    assert_eq!(
        check(
            Preset::Slack,
            &[("X-Slack-Signature", SLACK_SIG)],
            SLACK_BODY,
            SLACK_NOW,
            s
        ),
        missing("X-Slack-Request-Timestamp")
    );
    let v1 = SLACK_SIG.replace("v0=", "v1=");
    assert!(is_malformed(
        check(
            Preset::Slack,
            &[
                ("X-Slack-Signature", &v1),
                ("X-Slack-Request-Timestamp", SLACK_TS)
            ],
            SLACK_BODY,
            SLACK_NOW,
            s
        ),
        "X-Slack-Signature"
    ));
    assert!(is_malformed(
        check(
            Preset::Slack,
            &[
                ("X-Slack-Signature", SLACK_SIG),
                ("X-Slack-Request-Timestamp", "yesterday")
            ],
            SLACK_BODY,
            SLACK_NOW,
            s
        ),
        "X-Slack-Request-Timestamp"
    ));
}

#[test]
fn slack_rotation() {
    let h = [
        ("X-Slack-Signature", SLACK_SIG),
        ("X-Slack-Request-Timestamp", SLACK_TS),
    ];
    assert_eq!(
        check(
            Preset::Slack,
            &h,
            SLACK_BODY,
            SLACK_NOW,
            &["old signing secret", SLACK_SECRET]
        ),
        Ok(())
    );
    assert_eq!(
        check(
            Preset::Slack,
            &h,
            SLACK_BODY,
            SLACK_NOW,
            &["old signing secret"]
        ),
        bad("X-Slack-Signature")
    );
}

// --------------------------------------------------------------------------------- Shopify

const SHOPIFY_BODY: &[u8] =
    br#"{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00"}"#;

#[test]
fn shopify() {
    let s = &["shopify secret"];
    let h = [(
        "X-Shopify-Hmac-Sha256",
        "LA2QSszJQe4w5/cPzO5TcTL01y8qTldp5ARbx3lxiKg=",
    )];
    assert_eq!(check(Preset::Shopify, &h, SHOPIFY_BODY, 0, s), Ok(()));
    assert_eq!(
        check(Preset::Shopify, &h, b"{}", 0, s),
        bad("X-Shopify-Hmac-Sha256")
    );
    assert_eq!(
        check(Preset::Shopify, &[], SHOPIFY_BODY, 0, s),
        missing("X-Shopify-Hmac-Sha256")
    );
    for malformed in ["not base64!", "LA2QSszJQe4w5/cPzO5TcTL01y8=", "2c0d904acc"] {
        assert!(
            is_malformed(
                check(
                    Preset::Shopify,
                    &[("X-Shopify-Hmac-Sha256", malformed)],
                    SHOPIFY_BODY,
                    0,
                    s
                ),
                "X-Shopify-Hmac-Sha256"
            ),
            "{malformed}"
        );
    }
    let h = [(
        "X-Shopify-Hmac-Sha256",
        "XsnWPCPL12eK1LySghm8Vtima/IE6Z0H9dmFaRbWySI=",
    )];
    assert_eq!(
        check(
            Preset::Shopify,
            &h,
            SHOPIFY_BODY,
            0,
            &["shopify secret", "shopify secret 2"]
        ),
        Ok(())
    );
    assert_eq!(
        check(Preset::Shopify, &h, SHOPIFY_BODY, 0, s),
        bad("X-Shopify-Hmac-Sha256")
    );
}

// ------------------------------------------------------------------------ Standard Webhooks

/// The spec's libraries' test vector (standard-webhooks, `libraries/*/tests`: `test_sign`).
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: &str = "1614265330";
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const SW_NOW: i64 = 1_614_265_330;

fn sw_headers(sig: &str) -> [(&str, &str); 3] {
    [
        ("webhook-id", SW_ID),
        ("webhook-timestamp", SW_TS),
        ("webhook-signature", sig),
    ]
}

#[test]
fn standard_webhooks_published_example() {
    let h = sw_headers(SW_SIG);
    assert_eq!(
        check(Preset::StandardWebhooks, &h, SW_BODY, SW_NOW, &[SW_SECRET]),
        Ok(())
    );
    // Without the prefix the secret is the same base64 key.
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &h,
            SW_BODY,
            SW_NOW,
            &["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
        ),
        Ok(())
    );
    // Several signatures, other versions ignored.
    let several = format!("v2,abc v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU= {SW_SIG}");
    let h = sw_headers(&several);
    assert_eq!(
        check(Preset::StandardWebhooks, &h, SW_BODY, SW_NOW, &[SW_SECRET]),
        Ok(())
    );
    // Svix's headers.
    let h = [
        ("svix-id", SW_ID),
        ("svix-timestamp", SW_TS),
        ("svix-signature", SW_SIG),
    ];
    assert_eq!(
        check(Preset::StandardWebhooks, &h, SW_BODY, SW_NOW, &[SW_SECRET]),
        Ok(())
    );
}

#[test]
fn standard_webhooks_refusals() {
    let s = &[SW_SECRET];
    let h = sw_headers(SW_SIG);
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &h,
            br#"{"test": 2432232315}"#,
            SW_NOW,
            s
        ),
        bad("webhook-signature")
    );
    assert_eq!(
        check(Preset::StandardWebhooks, &h, SW_BODY, SW_NOW + 301, s),
        expired("webhook-timestamp")
    );
    assert_eq!(
        check(Preset::StandardWebhooks, &h, SW_BODY, SW_NOW - 301, s),
        expired("webhook-timestamp")
    );
    // The id is signed.
    let other_id = [
        ("webhook-id", "msg_other"),
        ("webhook-timestamp", SW_TS),
        ("webhook-signature", SW_SIG),
    ];
    assert_eq!(
        check(Preset::StandardWebhooks, &other_id, SW_BODY, SW_NOW, s),
        bad("webhook-signature")
    );
    assert_eq!(
        check(Preset::StandardWebhooks, &h[1..], SW_BODY, SW_NOW, s),
        missing("webhook-id")
    );
    assert_eq!(
        check(Preset::StandardWebhooks, &[h[0], h[2]], SW_BODY, SW_NOW, s),
        missing("webhook-timestamp")
    );
    assert_eq!(
        check(Preset::StandardWebhooks, &h[..2], SW_BODY, SW_NOW, s),
        missing("webhook-signature")
    );
    for malformed in [
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "v2,abc",
        "v1",
    ] {
        assert!(
            is_malformed(
                check(
                    Preset::StandardWebhooks,
                    &sw_headers(malformed),
                    SW_BODY,
                    SW_NOW,
                    s
                ),
                "webhook-signature"
            ),
            "{malformed}"
        );
    }
    // A partial signature (the Rust library's test): no match.
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &sw_headers("v1,g0hM9SsE+OTPJTGt"),
            SW_BODY,
            SW_NOW,
            s
        ),
        bad("webhook-signature")
    );
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &sw_headers("v1,"),
            SW_BODY,
            SW_NOW,
            s
        ),
        bad("webhook-signature")
    );
    let bad_ts = [
        ("webhook-id", SW_ID),
        ("webhook-timestamp", "1614265330.5"),
        ("webhook-signature", SW_SIG),
    ];
    assert!(is_malformed(
        check(Preset::StandardWebhooks, &bad_ts, SW_BODY, SW_NOW, s),
        "webhook-timestamp"
    ));
}

#[test]
fn standard_webhooks_rotation_and_raw_secrets() {
    // Signed with the Rust library's test secret (whsec_C2FV...).
    let h = sw_headers("v1,78nXHjpFP0tVJQW5D0SBwmVyyW87BV/rL6MgfM/Bw44=");
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &h,
            SW_BODY,
            SW_NOW,
            &[SW_SECRET, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]
        ),
        Ok(())
    );
    assert_eq!(
        check(Preset::StandardWebhooks, &h, SW_BODY, SW_NOW, &[SW_SECRET]),
        bad("webhook-signature")
    );
    // A secret that is not base64 is used as it is.
    let h = sw_headers("v1,UvlebkBkImC0yMue7lxSB46dpT26yyh5QcVNXZ0PEZ0=");
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &h,
            SW_BODY,
            SW_NOW,
            &["my-raw-secret!"]
        ),
        Ok(())
    );
}

#[test]
fn standard_webhooks_v1a_ed25519() {
    use ring::signature::KeyPair as _;
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
    let other = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).unwrap();
    let message = [format!("{SW_ID}.{SW_TS}.").as_bytes(), SW_BODY].concat();
    let sig = format!(
        "v1a,{}",
        crate::util::encode_base64(pair.sign(&message).as_ref())
    );
    let public = format!(
        "whpk_{}",
        crate::util::encode_base64(pair.public_key().as_ref())
    );
    let other_public = format!(
        "whpk_{}",
        crate::util::encode_base64(other.public_key().as_ref())
    );
    let h = sw_headers(&sig);
    assert_eq!(
        check(Preset::StandardWebhooks, &h, SW_BODY, SW_NOW, &[&public]),
        Ok(())
    );
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &h,
            SW_BODY,
            SW_NOW,
            &[&other_public, &public]
        ),
        Ok(())
    );
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &h,
            SW_BODY,
            SW_NOW,
            &[&other_public]
        ),
        bad("webhook-signature")
    );
    assert_eq!(
        check(Preset::StandardWebhooks, &h, b"{}", SW_NOW, &[&public]),
        bad("webhook-signature")
    );
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &h,
            SW_BODY,
            SW_NOW + 1000,
            &[&public]
        ),
        expired("webhook-timestamp")
    );
    // A public key does not verify a v1 signature, nor an HMAC secret a v1a one.
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &sw_headers(SW_SIG),
            SW_BODY,
            SW_NOW,
            &[&public]
        ),
        bad("webhook-signature")
    );
    assert_eq!(
        check(Preset::StandardWebhooks, &h, SW_BODY, SW_NOW, &[SW_SECRET]),
        bad("webhook-signature")
    );
    // Both kinds in one header (the spec's example header), with both kinds of secret.
    let both = format!("{SW_SIG} {sig}");
    assert_eq!(
        check(
            Preset::StandardWebhooks,
            &sw_headers(&both),
            SW_BODY,
            SW_NOW,
            &[&other_public, SW_SECRET]
        ),
        Ok(())
    );
}

// ---------------------------------------------------------------------------------- Twilio

const TWILIO_FORM: &str = "application/x-www-form-urlencoded";

fn twilio_check(
    configured: Option<&str>,
    url: &str,
    method: &str,
    pairs: &[(&str, &str)],
    body: &[u8],
    keys: &[&str],
) -> Result<(), Refusal> {
    let map = headers(pairs);
    let d = Delivery {
        method,
        url,
        headers: &map,
        body,
        now: 0,
    };
    verify(
        &policy(Preset::Twilio {
            url: configured.map(str::to_owned),
        }),
        &d,
        &secrets(keys),
    )
}

/// Twilio's "Webhooks security" guide: auth token 12345, this URL and these parameters.
const TWILIO_DOC_BODY: &[u8] = b"To=%2B18005551212&CallSid=CA1234567890ABCDE&Digits=1234&From=%2B12349013030&Caller=%2B12349013030";
const TWILIO_DOC_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const TWILIO_DOC_SIG: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

#[test]
fn twilio_published_example() {
    let h = [
        ("X-Twilio-Signature", TWILIO_DOC_SIG),
        ("Content-Type", TWILIO_FORM),
    ];
    assert_eq!(
        twilio_check(
            None,
            TWILIO_DOC_URL,
            "POST",
            &h,
            TWILIO_DOC_BODY,
            &["12345"]
        ),
        Ok(())
    );
    // Behind a proxy: the URL Twilio was given, the query as it arrived.
    assert_eq!(
        twilio_check(
            Some("https://mycompany.com/myapp.php"),
            "http://10.0.0.5:8080/internal/myapp.php?foo=1&bar=2",
            "POST",
            &h,
            TWILIO_DOC_BODY,
            &["12345"]
        ),
        Ok(())
    );
    // Rotation: the second token matches; the other alone does not.
    assert_eq!(
        twilio_check(
            None,
            TWILIO_DOC_URL,
            "POST",
            &h,
            TWILIO_DOC_BODY,
            &["54321", "12345"]
        ),
        Ok(())
    );
    assert_eq!(
        twilio_check(
            None,
            TWILIO_DOC_URL,
            "POST",
            &h,
            TWILIO_DOC_BODY,
            &["54321"]
        ),
        bad("X-Twilio-Signature")
    );
}

#[test]
fn twilio_refusals() {
    let h = [
        ("X-Twilio-Signature", TWILIO_DOC_SIG),
        ("Content-Type", TWILIO_FORM),
    ];
    let tampered = b"To=%2B18005551212&CallSid=CA1234567890ABCDE&Digits=9999&From=%2B12349013030&Caller=%2B12349013030";
    assert_eq!(
        twilio_check(None, TWILIO_DOC_URL, "POST", &h, tampered, &["12345"]),
        bad("X-Twilio-Signature")
    );
    // An added parameter.
    let mut added = TWILIO_DOC_BODY.to_vec();
    added.extend_from_slice(b"&Extra=1");
    assert_eq!(
        twilio_check(None, TWILIO_DOC_URL, "POST", &h, &added, &["12345"]),
        bad("X-Twilio-Signature")
    );
    assert_eq!(
        twilio_check(
            None,
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            "POST",
            &h,
            TWILIO_DOC_BODY,
            &["12345"]
        ),
        bad("X-Twilio-Signature")
    );
    assert_eq!(
        twilio_check(
            None,
            TWILIO_DOC_URL,
            "POST",
            &h[1..],
            TWILIO_DOC_BODY,
            &["12345"]
        ),
        missing("X-Twilio-Signature")
    );
    for malformed in [
        "not base64!",
        "0/KCTR6DLpKmkAf8",
        "sha1=0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
    ] {
        let h = [
            ("X-Twilio-Signature", malformed),
            ("Content-Type", TWILIO_FORM),
        ];
        assert!(
            is_malformed(
                twilio_check(
                    None,
                    TWILIO_DOC_URL,
                    "POST",
                    &h,
                    TWILIO_DOC_BODY,
                    &["12345"]
                ),
                "X-Twilio-Signature"
            ),
            "{malformed}"
        );
    }
}

/// twilio-python's `tests/unit/test_request_validator.py`.
mod twilio_python {
    use super::*;

    const URI: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const BODY: &[u8] = b"CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";

    fn form(url: &str, body: &[u8], sig: &str) -> Result<(), Refusal> {
        let h = [
            ("X-Twilio-Signature", sig),
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ];
        twilio_check(None, url, "POST", &h, body, &["12345"])
    }

    #[test]
    fn validation() {
        assert_eq!(form(URI, BODY, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), Ok(()));
    }

    #[test]
    fn removes_port_on_https() {
        assert_eq!(
            form(
                "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
                BODY,
                "RSOYDt4T1cUTdK1PDd93/VVr8B8="
            ),
            Ok(())
        );
    }

    #[test]
    fn keeps_a_given_port_on_http() {
        assert_eq!(
            form(
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                BODY,
                "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
            ),
            Ok(())
        );
    }

    #[test]
    fn adds_port_on_https() {
        assert_eq!(form(URI, BODY, "kvajT1Ptam85bY51eRf/AJRuM3w="), Ok(()));
    }

    #[test]
    fn adds_port_on_http() {
        assert_eq!(
            form(
                "http://mycompany.com/myapp.php?foo=1&bar=2",
                BODY,
                "0ZXoZLH/DfblKGATFgpif+LLRf4="
            ),
            Ok(())
        );
    }

    #[test]
    fn duplicate_parameters_sorted_and_deduplicated() {
        let body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234";
        assert_eq!(form(URI, body, "IK+Dwps556ElfBT0I3Rgjkr1wJU="), Ok(()));
    }

    #[test]
    fn json_body() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        let h = [
            ("X-Twilio-Signature", "a9nBmqA0ju/hNViExpshrM61xv4="),
            ("Content-Type", "application/json"),
        ];
        assert_eq!(
            twilio_check(None, url, "POST", &h, body, &["12345"]),
            Ok(())
        );
        // The body must be the one hashed in the signed URL.
        assert_eq!(
            twilio_check(
                None,
                url,
                "POST",
                &h,
                br#"{"property": "value", "boolean": false}"#,
                &["12345"]
            ),
            bad("X-Twilio-Signature")
        );
        // Behind a proxy, the configured URL gets the query that arrived (with bodySHA256).
        assert_eq!(
            twilio_check(
                Some("https://mycompany.com/myapp.php"),
                "http://internal/x?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620",
                "POST",
                &h,
                body,
                &["12345"]
            ),
            Ok(())
        );
    }
}

#[test]
fn twilio_url_ports() {
    assert_eq!(
        with_port("https://a.example/p?q=1"),
        "https://a.example:443/p?q=1"
    );
    assert_eq!(with_port("http://a.example"), "http://a.example:80");
    assert_eq!(
        with_port("https://a.example:8443/p"),
        "https://a.example:8443/p"
    );
    assert_eq!(
        without_port("https://a.example:8443/p"),
        "https://a.example/p"
    );
    assert_eq!(without_port("https://[::1]:8443/p"), "https://[::1]/p");
    assert_eq!(with_port("https://[::1]/p"), "https://[::1]:443/p");
    assert_eq!(
        without_port("https://user:pw@a.example/p"),
        "https://user:pw@a.example/p"
    );
    assert_eq!(without_port("no scheme"), "no scheme");
    assert_eq!(with_port("é://ü:é/"), "é://ü:é:80/");
}

// ----------------------------------------------------------------------------------- Zoom

const ZOOM_BODY: &[u8] =
    br#"{"event":"meeting.started","event_ts":1700000000123,"payload":{"account_id":"AAAAAA"}}"#;
const ZOOM_SIG: &str = "v0=dfa3463be6fe4ac940a958f90ce81829b01d25b9dfe62287d14f5c045cda1488";

#[test]
fn zoom() {
    let s = &["zoom secret token"];
    let h = [
        ("x-zm-signature", ZOOM_SIG),
        ("x-zm-request-timestamp", "1700000000"),
    ];
    assert_eq!(check(Preset::Zoom, &h, ZOOM_BODY, 1_700_000_000, s), Ok(()));
    assert_eq!(
        check(Preset::Zoom, &h, b"{}", 1_700_000_000, s),
        bad("x-zm-signature")
    );
    assert_eq!(
        check(Preset::Zoom, &h, ZOOM_BODY, 1_700_000_400, s),
        expired("x-zm-request-timestamp")
    );
    assert_eq!(
        check(Preset::Zoom, &h[1..], ZOOM_BODY, 1_700_000_000, s),
        missing("x-zm-signature")
    );
    assert_eq!(
        check(Preset::Zoom, &h[..1], ZOOM_BODY, 1_700_000_000, s),
        missing("x-zm-request-timestamp")
    );
    assert!(is_malformed(
        check(
            Preset::Zoom,
            &[("x-zm-signature", "dfa3463b"), h[1]],
            ZOOM_BODY,
            1_700_000_000,
            s
        ),
        "x-zm-signature"
    ));
    let h2 = [
        (
            "x-zm-signature",
            "v0=8c577ac6a69c68b0158d0e0a8f3d4d5cdb5c4551db5f095f9df0c5956fded924",
        ),
        ("x-zm-request-timestamp", "1700000000"),
    ];
    assert_eq!(
        check(
            Preset::Zoom,
            &h2,
            ZOOM_BODY,
            1_700_000_000,
            &["zoom secret token", "zoom secret token 2"]
        ),
        Ok(())
    );
    assert_eq!(
        check(Preset::Zoom, &h2, ZOOM_BODY, 1_700_000_000, s),
        bad("x-zm-signature")
    );
}

// ---------------------------------------------------------------------------------- Twitch

const TWITCH_MSG_ID: &str = "e76c6bd4-55c9-4987-8304-da1588d8988b";
const TWITCH_TS: &str = "2023-11-14T22:13:20.123456789Z";
const TWITCH_BODY: &[u8] =
    br#"{"subscription":{"type":"channel.follow","version":"2"},"event":{"user_login":"cool_user"}}"#;

fn twitch_headers(sig: &str) -> [(&str, &str); 4] {
    [
        ("Twitch-Eventsub-Message-Id", TWITCH_MSG_ID),
        ("Twitch-Eventsub-Message-Timestamp", TWITCH_TS),
        ("Twitch-Eventsub-Message-Signature", sig),
        ("Twitch-Eventsub-Message-Type", "notification"),
    ]
}

#[test]
fn twitch() {
    let s = &["twitch secret 1234"];
    let sig = "sha256=27a6db6dbb06f225fd9eb34bea04163ab3fcd6ece6325d0c0ffd3e5ad9c55d32";
    let h = twitch_headers(sig);
    assert_eq!(
        check(Preset::Twitch, &h, TWITCH_BODY, 1_700_000_000, s),
        Ok(())
    );
    assert_eq!(
        check(Preset::Twitch, &h, b"{}", 1_700_000_000, s),
        bad("Twitch-Eventsub-Message-Signature")
    );
    assert_eq!(
        check(Preset::Twitch, &h, TWITCH_BODY, 1_700_000_301, s),
        expired("Twitch-Eventsub-Message-Timestamp")
    );
    assert_eq!(
        check(Preset::Twitch, &h[..2], TWITCH_BODY, 1_700_000_000, s),
        missing("Twitch-Eventsub-Message-Signature")
    );
    assert_eq!(
        check(Preset::Twitch, &h[1..], TWITCH_BODY, 1_700_000_000, s),
        missing("Twitch-Eventsub-Message-Id")
    );
    let bad_ts = [
        h[0],
        ("Twitch-Eventsub-Message-Timestamp", "1700000000"),
        h[2],
    ];
    assert!(is_malformed(
        check(Preset::Twitch, &bad_ts, TWITCH_BODY, 1_700_000_000, s),
        "Twitch-Eventsub-Message-Timestamp"
    ));
    assert!(is_malformed(
        check(
            Preset::Twitch,
            &twitch_headers("27a6db6d"),
            TWITCH_BODY,
            1_700_000_000,
            s
        ),
        "Twitch-Eventsub-Message-Signature"
    ));
    let h2 =
        twitch_headers("sha256=92aed2a19c7fb10410ba8380626e88f5136f1bd6c9cdeacf0c1675d41ecd6757");
    assert_eq!(
        check(
            Preset::Twitch,
            &h2,
            TWITCH_BODY,
            1_700_000_000,
            &["twitch secret 1234", "twitch secret 5678"]
        ),
        Ok(())
    );
    assert_eq!(
        check(Preset::Twitch, &h2, TWITCH_BODY, 1_700_000_000, s),
        bad("Twitch-Eventsub-Message-Signature")
    );
}

// --------------------------------------------------------------------------------- Dropbox

const DROPBOX_BODY: &[u8] = br#"{"list_folder": {"accounts": ["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]}, "delta": {"users": [12345]}}"#;

#[test]
fn dropbox() {
    let s = &["dropbox app secret"];
    let h = [(
        "X-Dropbox-Signature",
        "059e3c89385de9300b93dd1a628edcd845f98b407d1141828c5b47c3fc2d08a3",
    )];
    assert_eq!(check(Preset::Dropbox, &h, DROPBOX_BODY, 0, s), Ok(()));
    assert_eq!(
        check(Preset::Dropbox, &h, b"{}", 0, s),
        bad("X-Dropbox-Signature")
    );
    assert_eq!(
        check(Preset::Dropbox, &[], DROPBOX_BODY, 0, s),
        missing("X-Dropbox-Signature")
    );
    assert!(is_malformed(
        check(
            Preset::Dropbox,
            &[("X-Dropbox-Signature", "sha256=059e")],
            DROPBOX_BODY,
            0,
            s
        ),
        "X-Dropbox-Signature"
    ));
    let h = [(
        "X-Dropbox-Signature",
        "6d89ad7289c03f7c14078502430f28c00de3e43ea701871171435dfa983acef1",
    )];
    assert_eq!(
        check(
            Preset::Dropbox,
            &h,
            DROPBOX_BODY,
            0,
            &["dropbox app secret", "dropbox app secret 2"]
        ),
        Ok(())
    );
    assert_eq!(
        check(Preset::Dropbox, &h, DROPBOX_BODY, 0, s),
        bad("X-Dropbox-Signature")
    );
}

// ----------------------------------------------------------------------------------- Graph

#[test]
fn graph() {
    let s = &["client state value"];
    let ok = br#"{"value":[{"subscriptionId":"a","clientState":"client state value","changeType":"created"},{"subscriptionId":"b","clientState":"client state value"}]}"#;
    assert_eq!(check(Preset::Graph, &[], ok, 0, s), Ok(()));
    let one_wrong = br#"{"value":[{"clientState":"client state value"},{"clientState":"forged"}]}"#;
    assert_eq!(
        check(Preset::Graph, &[], one_wrong, 0, s),
        Err(Refusal::BadToken("clientState".into()))
    );
    let one_missing = br#"{"value":[{"clientState":"client state value"},{"subscriptionId":"b"}]}"#;
    assert_eq!(
        check(Preset::Graph, &[], one_missing, 0, s),
        Err(Refusal::BadToken("clientState".into()))
    );
    for not_notifications in [
        &b"not json"[..],
        b"{}",
        br#"{"value":[]}"#,
        br#"{"value":{}}"#,
        b"[]",
    ] {
        assert!(
            matches!(
                check(Preset::Graph, &[], not_notifications, 0, s),
                Err(Refusal::BadBody(_))
            ),
            "{not_notifications:?}"
        );
    }
    // Rotation.
    assert_eq!(
        check(
            Preset::Graph,
            &[],
            ok,
            0,
            &["old state", "client state value"]
        ),
        Ok(())
    );
    assert_eq!(
        check(Preset::Graph, &[], ok, 0, &["old state"]),
        Err(Refusal::BadToken("clientState".into()))
    );
}

// ------------------------------------------------------------------------------------ HMAC

fn spec(header: &str) -> HmacSpec {
    HmacSpec {
        header: header.into(),
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: String::new(),
        signed: "{body}".into(),
        timestamp_header: None,
    }
}

#[test]
fn generic_hmac_template_sha512_base64_with_timestamp() {
    let spec = HmacSpec {
        algorithm: Algorithm::Sha512,
        encoding: Encoding::Base64,
        prefix: "sig=".into(),
        signed: "{method} {url}\n{header:X-Timestamp}.{body}".into(),
        timestamp_header: Some("X-Timestamp".into()),
        ..spec("X-Signature")
    };
    let url = "https://hooks.example.com/api/v1/webhooks/custom";
    let sig = "sig=SOHRE+S+p60w57VXS8m1ojiIPMcxLr/jfiM9IT9nVCenMAr/nEfqVVCJ9Wj2lBeE7aAICnMP76BnOyyq//3Xww==";
    let run = |sig: &str, ts: Option<&str>, body: &[u8], now: i64, url: &str| {
        let mut pairs = vec![("X-Signature", sig)];
        pairs.extend(ts.map(|ts| ("X-Timestamp", ts)));
        let map = headers(&pairs);
        let d = Delivery {
            method: "POST",
            url,
            headers: &map,
            body,
            now,
        };
        verify(
            &policy(Preset::Hmac(spec.clone())),
            &d,
            &secrets(&["generic secret"]),
        )
    };
    assert_eq!(
        run(sig, Some("1700000000"), br#"{"a":1}"#, 1_700_000_000, url),
        Ok(())
    );
    assert_eq!(
        run(sig, Some("1700000000"), br#"{"a":2}"#, 1_700_000_000, url),
        bad("X-Signature")
    );
    assert_eq!(
        run(
            sig,
            Some("1700000000"),
            br#"{"a":1}"#,
            1_700_000_000,
            "https://elsewhere/x"
        ),
        bad("X-Signature")
    );
    assert_eq!(
        run(sig, Some("1700000001"), br#"{"a":1}"#, 1_700_000_000, url),
        bad("X-Signature")
    );
    assert_eq!(
        run(sig, Some("1700000000"), br#"{"a":1}"#, 1_700_001_000, url),
        expired("X-Timestamp")
    );
    assert_eq!(
        run(sig, None, br#"{"a":1}"#, 1_700_000_000, url),
        missing("X-Timestamp")
    );
    assert!(is_malformed(
        run(sig, Some("soon"), br#"{"a":1}"#, 1_700_000_000, url),
        "X-Timestamp"
    ));
    // Without its prefix, or with a hex signature, the header is malformed.
    assert!(is_malformed(
        run(
            &sig[4..],
            Some("1700000000"),
            br#"{"a":1}"#,
            1_700_000_000,
            url
        ),
        "X-Signature"
    ));
    assert!(is_malformed(
        run(
            "sig=abcd",
            Some("1700000000"),
            br#"{"a":1}"#,
            1_700_000_000,
            url
        ),
        "X-Signature"
    ));
}

#[test]
fn generic_hmac_sha1_hex_any_case_and_rotation() {
    let sha1 = HmacSpec {
        algorithm: Algorithm::Sha1,
        ..spec("X-Signature")
    };
    let body = br#"{"a":1}"#;
    let upper = "098082640262B5CCA027DD158BE62B3EB1B05CEC";
    assert_eq!(
        check(
            Preset::Hmac(sha1.clone()),
            &[("X-Signature", upper)],
            body,
            0,
            &["generic secret"]
        ),
        Ok(())
    );
    let lower = upper.to_lowercase();
    assert_eq!(
        check(
            Preset::Hmac(sha1.clone()),
            &[("X-Signature", &lower)],
            body,
            0,
            &["generic secret"]
        ),
        Ok(())
    );
    assert_eq!(
        check(
            Preset::Hmac(sha1.clone()),
            &[("X-Signature", upper)],
            b"{}",
            0,
            &["generic secret"]
        ),
        bad("X-Signature")
    );
    assert_eq!(
        check(Preset::Hmac(sha1), &[], body, 0, &["generic secret"]),
        missing("X-Signature")
    );
    // A SHA-256 signature under the second secret.
    let h = [(
        "X-Signature",
        "8a2912d6f477da82f85a0b520bb5fc4016bc3090aa55efb1f5667f6964fd60e7",
    )];
    assert_eq!(
        check(
            Preset::Hmac(spec("X-Signature")),
            &h,
            body,
            0,
            &["generic secret", "generic secret 2"]
        ),
        Ok(())
    );
    assert_eq!(
        check(
            Preset::Hmac(spec("X-Signature")),
            &h,
            body,
            0,
            &["generic secret"]
        ),
        bad("X-Signature")
    );
    // A template a policy parse would refuse matches nothing.
    let broken = HmacSpec {
        signed: "{bodi}".into(),
        ..spec("X-Signature")
    };
    assert_eq!(
        check(Preset::Hmac(broken), &h, body, 0, &["generic secret 2"]),
        bad("X-Signature")
    );
}

// ------------------------------------------------------------------------- Refusal Display

#[test]
fn refusal_messages() {
    let cases = [
        (
            Refusal::MissingHeader("X-Hub-Signature-256".into()),
            "Webhook verification failed: missing header X-Hub-Signature-256",
        ),
        (
            Refusal::Malformed {
                header: "Stripe-Signature".into(),
                expected: "t=<timestamp>,v1=<hex signature>".into(),
            },
            "Webhook verification failed: header Stripe-Signature is malformed (expected t=<timestamp>,v1=<hex signature>)",
        ),
        (
            Refusal::BadSignature("X-Hub-Signature-256".into()),
            "Webhook verification failed: the signature in X-Hub-Signature-256 does not match the body",
        ),
        (
            Refusal::BadSignature("X-Twilio-Signature".into()),
            "Webhook verification failed: the signature in X-Twilio-Signature does not match the URL and parameters",
        ),
        (
            Refusal::BadToken("X-Gitlab-Token".into()),
            "Webhook verification failed: the token in X-Gitlab-Token does not match",
        ),
        (
            Refusal::Expired {
                header: "X-Slack-Request-Timestamp".into(),
                tolerance_secs: 300,
            },
            "Webhook verification failed: the timestamp in X-Slack-Request-Timestamp is outside the tolerance of 300 seconds",
        ),
        (
            Refusal::BadBody("JSON with a `value` list of change notifications".into()),
            "Webhook verification failed: the body is malformed (expected JSON with a `value` list of change notifications)",
        ),
        (
            Refusal::NoSecret,
            "Webhook verification failed: no secret is configured for this hook",
        ),
    ];
    for (refusal, text) in cases {
        assert_eq!(refusal.to_string(), text);
    }
}

#[test]
fn refusals_never_carry_the_secret_or_the_expected_signature() {
    let secret = "super-secret-value";
    let h = [(
        "X-Hub-Signature-256",
        "sha256=0000000000000000000000000000000000000000000000000000000000000000",
    )];
    let refusal = check(Preset::GitHub, &h, HELLO, 0, &[secret]).unwrap_err();
    let expected_hex = hex::encode(crate::util::hmac_sha256(secret.as_bytes(), &[HELLO]).unwrap());
    let text = format!("{refusal} {refusal:?}");
    assert!(
        !text.contains(secret) && !text.contains(&expected_hex),
        "{text}"
    );
}

#[test]
fn no_panic_on_odd_input() {
    let odd_values: [&[u8]; 8] = [
        b"\xff\xfe",
        "é".as_bytes(),
        "sha256=é".as_bytes(),
        b"t=,v1=,",
        b"v1,\xc3\xa9 v1a,",
        b"=,=,=",
        b"  ",
        "v0=ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé".as_bytes(),
    ];
    let presets = [
        Preset::GitHub,
        Preset::Gitea,
        Preset::Bitbucket,
        Preset::GitLab,
        Preset::Stripe,
        Preset::Slack,
        Preset::Shopify,
        Preset::StandardWebhooks,
        Preset::Twilio { url: None },
        Preset::Twilio {
            url: Some("https://é:é/é".into()),
        },
        Preset::Meta,
        Preset::Zoom,
        Preset::Twitch,
        Preset::Dropbox,
        Preset::Graph,
        Preset::Hmac(HmacSpec {
            prefix: "é".into(),
            timestamp_header: Some("X-Ts".into()),
            signed: "{header:X-Ts}{url}{method}{body}".into(),
            ..spec("X-Signature")
        }),
    ];
    let names = [
        "X-Hub-Signature-256",
        "X-Hub-Signature",
        "X-Gitea-Signature",
        "X-Gitlab-Token",
        "Stripe-Signature",
        "X-Slack-Signature",
        "X-Slack-Request-Timestamp",
        "X-Shopify-Hmac-Sha256",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "X-Twilio-Signature",
        "x-zm-signature",
        "x-zm-request-timestamp",
        "Twitch-Eventsub-Message-Id",
        "Twitch-Eventsub-Message-Timestamp",
        "Twitch-Eventsub-Message-Signature",
        "X-Dropbox-Signature",
        "X-Signature",
        "X-Ts",
        "Content-Type",
    ];
    for value in odd_values {
        let mut map = HeaderMap::new();
        for name in names {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        for preset in &presets {
            for body in [&b""[..], b"\xff", "é".as_bytes(), b"{\"value\":[{}]}"] {
                for url in ["", "é", "https://é:443/é?é=é&bodySHA256=é", "?"] {
                    let d = Delivery {
                        method: "POST",
                        url,
                        headers: &map,
                        body,
                        now: i64::MIN,
                    };
                    let result = verify(
                        &policy(preset.clone()),
                        &d,
                        &secrets(&["k", "whpk_é", "whsec_"]),
                    );
                    assert!(result.is_err(), "{preset:?} {value:?}");
                    let d = Delivery { now: i64::MAX, ..d };
                    let _ = verify(&policy(preset.clone()), &d, &secrets(&["k"]));
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------- Delivery id

fn hook(verify: Option<Verify>) -> HookPolicy {
    HookPolicy {
        verify,
        replay: Replay {
            window: Duration::from_secs(86_400),
            header: None,
        },
        handshake: None,
        store_handshakes: false,
        respond: None,
        accept: Accept::default(),
    }
}

fn id_of(policy: &HookPolicy, pairs: &[(&str, &str)], body: &[u8]) -> Option<String> {
    let map = headers(pairs);
    delivery_id(policy, &delivery(&map, body, 0))
}

#[test]
fn delivery_ids_from_the_presets_sources() {
    type Case<'a> = (Preset, Vec<(&'a str, &'a str)>, &'a [u8], Option<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            Preset::GitHub,
            vec![("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")],
            b"",
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ),
        (
            Preset::Gitea,
            vec![("X-Gitea-Delivery", "g-1"), ("X-GitHub-Delivery", "g-2")],
            b"",
            Some("g-1"),
        ),
        (
            Preset::Gitea,
            vec![("X-GitHub-Delivery", "g-2")],
            b"",
            Some("g-2"),
        ),
        (
            Preset::Bitbucket,
            vec![("X-Request-UUID", "b-1")],
            b"",
            Some("b-1"),
        ),
        (
            Preset::GitLab,
            vec![("X-Gitlab-Event-UUID", "l-1")],
            b"",
            Some("l-1"),
        ),
        (
            Preset::Stripe,
            vec![],
            STRIPE_BODY,
            Some("evt_1NG8Du2eZvKYlo2CUI79vXWy"),
        ),
        (Preset::Stripe, vec![], b"not json", None),
        (Preset::Stripe, vec![], br#"{"id": 12}"#, None),
        (
            Preset::Slack,
            vec![],
            br#"{"type":"event_callback","event_id":"Ev0PV52K21"}"#,
            Some("Ev0PV52K21"),
        ),
        (Preset::Slack, vec![], SLACK_BODY, None),
        (
            Preset::Shopify,
            vec![
                ("X-Shopify-Webhook-Id", "s-1"),
                ("X-Shopify-Event-Id", "s-2"),
            ],
            b"",
            Some("s-1"),
        ),
        (
            Preset::Shopify,
            vec![("X-Shopify-Event-Id", "s-2")],
            b"",
            Some("s-2"),
        ),
        (
            Preset::StandardWebhooks,
            vec![("webhook-id", SW_ID)],
            b"",
            Some(SW_ID),
        ),
        (
            Preset::StandardWebhooks,
            vec![("svix-id", "msg_svix")],
            b"",
            Some("msg_svix"),
        ),
        (
            Preset::Twilio { url: None },
            vec![("I-Twilio-Idempotency-Token", "t-1")],
            b"",
            Some("t-1"),
        ),
        (
            Preset::Twitch,
            vec![("Twitch-Eventsub-Message-Id", TWITCH_MSG_ID)],
            b"",
            Some(TWITCH_MSG_ID),
        ),
        (Preset::Meta, vec![("X-GitHub-Delivery", "x")], b"", None),
        (Preset::Zoom, vec![], ZOOM_BODY, None),
        (Preset::Dropbox, vec![], DROPBOX_BODY, None),
        (Preset::Graph, vec![], b"", None),
        (Preset::GitHub, vec![], b"", None),
    ];
    for (preset, pairs, body, expected) in cases {
        let policy = hook(Some(policy(preset.clone())));
        assert_eq!(
            id_of(&policy, &pairs, body).as_deref(),
            expected,
            "{preset:?} {pairs:?}"
        );
    }
}

#[test]
fn delivery_id_fallbacks_and_overrides() {
    // Idempotency-Key for any hook, verified or not, when the preset gives none.
    assert_eq!(
        id_of(&hook(None), &[("Idempotency-Key", "k-1")], b"").as_deref(),
        Some("k-1")
    );
    assert_eq!(id_of(&hook(None), &[], b""), None);
    let github = hook(Some(policy(Preset::GitHub)));
    assert_eq!(
        id_of(&github, &[("Idempotency-Key", "k-1")], b"").as_deref(),
        Some("k-1")
    );
    assert_eq!(
        id_of(
            &github,
            &[("Idempotency-Key", "k-1"), ("X-GitHub-Delivery", "d-1")],
            b""
        )
        .as_deref(),
        Some("d-1")
    );
    // replay.header replaces the preset's source.
    let mut custom = github.clone();
    custom.replay.header = Some("X-Request-Id".into());
    assert_eq!(
        id_of(
            &custom,
            &[("X-Request-Id", "r-1"), ("X-GitHub-Delivery", "d-1")],
            b""
        )
        .as_deref(),
        Some("r-1")
    );
    assert_eq!(
        id_of(
            &custom,
            &[("X-GitHub-Delivery", "d-1"), ("Idempotency-Key", "k-1")],
            b""
        )
        .as_deref(),
        Some("k-1")
    );
    // A zero window turns replay protection off.
    let mut off = github.clone();
    off.replay.window = Duration::ZERO;
    assert_eq!(id_of(&off, &[("X-GitHub-Delivery", "d-1")], b""), None);
}

#[test]
fn delivery_ids_are_bounded() {
    let github = hook(Some(policy(Preset::GitHub)));
    let longest = "a".repeat(MAX_DELIVERY_ID);
    let too_long = "a".repeat(MAX_DELIVERY_ID + 1);
    assert_eq!(
        id_of(&github, &[("X-GitHub-Delivery", &longest)], b""),
        Some(longest)
    );
    assert_eq!(
        id_of(&github, &[("X-GitHub-Delivery", &too_long)], b""),
        None
    );
    // Too long: the next source is used.
    assert_eq!(
        id_of(
            &github,
            &[("X-GitHub-Delivery", &too_long), ("Idempotency-Key", "k")],
            b""
        )
        .as_deref(),
        Some("k")
    );
    assert_eq!(id_of(&github, &[("X-GitHub-Delivery", "a\tb")], b""), None);
    assert_eq!(
        id_of(&github, &[("X-GitHub-Delivery", "  d-1  ")], b"").as_deref(),
        Some("d-1")
    );
    assert_eq!(id_of(&github, &[("X-GitHub-Delivery", "  ")], b""), None);
    // Non-ASCII UTF-8 is kept; other bytes are not an id.
    let mut map = HeaderMap::new();
    map.insert(
        "x-github-delivery",
        HeaderValue::from_bytes("dé".as_bytes()).unwrap(),
    );
    assert_eq!(
        delivery_id(&github, &delivery(&map, b"", 0)).as_deref(),
        Some("dé")
    );
    map.insert(
        "x-github-delivery",
        HeaderValue::from_bytes(b"d\xff").unwrap(),
    );
    assert_eq!(delivery_id(&github, &delivery(&map, b"", 0)), None);
    // Body ids are bounded and checked too.
    let stripe = hook(Some(policy(Preset::Stripe)));
    let body = format!(r#"{{"id":"{}"}}"#, "e".repeat(MAX_DELIVERY_ID + 1));
    assert_eq!(id_of(&stripe, &[], body.as_bytes()), None);
    assert_eq!(id_of(&stripe, &[], br#"{"id":"evt_\u0000"}"#), None);
}
