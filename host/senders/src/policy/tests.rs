use serde_json::{Value, json};

use super::*;

fn parse(value: Value) -> Result<Option<HookPolicy>, String> {
    match value {
        Value::Object(map) => HookPolicy::parse(&map),
        _ => panic!("parameters are a mapping"),
    }
}

fn parsed(value: Value) -> HookPolicy {
    parse(value).unwrap().unwrap()
}

fn error(value: Value) -> String {
    parse(value).unwrap_err()
}

#[test]
fn no_policy_keys_is_a_stackstorm_hook() {
    assert_eq!(parse(json!({"url": "github"})), Ok(None));
    assert_eq!(parse(json!({})), Ok(None));
    assert_eq!(parse(json!({"url": "x", "verify": null})), Ok(None));
}

#[test]
fn a_full_policy() {
    let policy = parsed(json!({
        "url": "github",
        "verify": {
            "preset": "github",
            "secret": [{"datastore": "github_secret"}, {"config": "webhook_secret"}],
            "tolerance_secs": 120,
            "require_api_key": true
        },
        "replay": {"window_secs": 3600, "header": "X-Request-Id"},
        "store_handshakes": false
    }));
    assert_eq!(
        policy,
        HookPolicy {
            verify: Some(Verify {
                preset: Preset::GitHub,
                secrets: vec![
                    SecretRef::Datastore("github_secret".into()),
                    SecretRef::Config("webhook_secret".into()),
                ],
                verify_token: vec![],
                tolerance: Duration::from_secs(120),
                require_api_key: true,
            }),
            replay: Replay {
                window: Duration::from_secs(3600),
                header: Some("X-Request-Id".into()),
            },
            handshake: None,
            store_handshakes: false,
            respond: None,
            accept: Accept::default(),
        }
    );
    assert_eq!(
        policy.secret_refs().cloned().collect::<Vec<_>>(),
        vec![
            SecretRef::Datastore("github_secret".into()),
            SecretRef::Config("webhook_secret".into()),
        ]
    );
}

#[test]
fn defaults() {
    let policy = parsed(json!({"verify": {"preset": "stripe", "secret": {"datastore": "s"}}}));
    let verify = policy.verify.unwrap();
    assert_eq!(verify.tolerance, DEFAULT_TOLERANCE);
    assert!(!verify.require_api_key);
    assert_eq!(policy.replay.window, DEFAULT_REPLAY_WINDOW);
    assert_eq!(policy.replay.header, None);
    assert_eq!(policy.handshake, None);
    assert!(!policy.store_handshakes);
    // Replay alone, with its window off.
    let policy = parsed(json!({"replay": {"window_secs": 0}}));
    assert_eq!(policy.verify, None);
    assert_eq!(policy.replay.window, Duration::ZERO);
    let policy = parsed(json!({"replay": {}}));
    assert_eq!(policy.replay.window, DEFAULT_REPLAY_WINDOW);
}

#[test]
fn every_preset_name() {
    let cases = [
        ("github", Preset::GitHub),
        ("gitea", Preset::Gitea),
        ("bitbucket", Preset::Bitbucket),
        ("gitlab", Preset::GitLab),
        ("stripe", Preset::Stripe),
        ("slack", Preset::Slack),
        ("shopify", Preset::Shopify),
        ("standard-webhooks", Preset::StandardWebhooks),
        ("standard_webhooks", Preset::StandardWebhooks),
        ("svix", Preset::StandardWebhooks),
        ("twilio", Preset::Twilio { url: None }),
        ("meta", Preset::Meta),
        ("zoom", Preset::Zoom),
        ("twitch", Preset::Twitch),
        ("dropbox", Preset::Dropbox),
        ("graph", Preset::Graph),
    ];
    for (name, preset) in cases {
        let policy = parsed(json!({"verify": {"preset": name, "secret": {"datastore": "s"}}}));
        let verify = policy.verify.unwrap();
        assert_eq!(verify.preset, preset, "{name}");
        assert_eq!(policy.handshake, preset.handshake(), "{name}");
        assert!(PRESET_NAMES.contains(&verify.preset.name()));
    }
}

#[test]
fn presets_bring_their_handshakes() {
    let handshake = |preset: &str| {
        parsed(json!({"verify": {"preset": preset, "secret": {"datastore": "s"}}})).handshake
    };
    assert_eq!(handshake("slack"), Some(HandshakeKind::Slack));
    assert_eq!(handshake("meta"), Some(HandshakeKind::Meta));
    assert_eq!(handshake("zoom"), Some(HandshakeKind::Zoom));
    assert_eq!(handshake("twitch"), Some(HandshakeKind::Twitch));
    assert_eq!(handshake("dropbox"), Some(HandshakeKind::Dropbox));
    assert_eq!(handshake("graph"), Some(HandshakeKind::Graph));
    assert_eq!(handshake("github"), None);
    // An explicit handshake wins, and needs no verify.
    let policy = parsed(json!({
        "verify": {"preset": "hmac", "header": "X-Sig", "secret": {"datastore": "s"}},
        "handshake": "graph"
    }));
    assert_eq!(policy.handshake, Some(HandshakeKind::Graph));
    let policy = parsed(json!({"handshake": "dropbox"}));
    assert_eq!(policy.handshake, Some(HandshakeKind::Dropbox));
    assert_eq!(policy.verify, None);
    for (name, kind) in [
        ("slack", HandshakeKind::Slack),
        ("meta", HandshakeKind::Meta),
        ("graph", HandshakeKind::Graph),
        ("zoom", HandshakeKind::Zoom),
        ("twitch", HandshakeKind::Twitch),
        ("dropbox", HandshakeKind::Dropbox),
    ] {
        assert_eq!(parsed(json!({"handshake": name})).handshake, Some(kind));
    }
}

#[test]
fn meta_verify_tokens() {
    let policy = parsed(json!({"verify": {
        "preset": "meta",
        "secret": {"datastore": "app_secret"},
        "verify_token": [{"datastore": "meta_verify"}, {"datastore": "meta_verify_new"}]
    }}));
    assert_eq!(
        policy.verify.as_ref().unwrap().verify_token,
        vec![
            SecretRef::Datastore("meta_verify".into()),
            SecretRef::Datastore("meta_verify_new".into()),
        ]
    );
    assert_eq!(
        policy.secret_refs().cloned().collect::<Vec<_>>(),
        vec![
            SecretRef::Datastore("app_secret".into()),
            SecretRef::Datastore("meta_verify".into()),
            SecretRef::Datastore("meta_verify_new".into()),
        ]
    );
    // With an explicit Meta handshake, any preset may carry the verify token.
    let policy = parsed(json!({
        "verify": {"preset": "github", "secret": {"datastore": "s"}, "verify_token": {"config": "vt"}},
        "handshake": "meta"
    }));
    assert_eq!(
        policy.verify.unwrap().verify_token,
        vec![SecretRef::Config("vt".into())]
    );
    let e = error(
        json!({"verify": {"preset": "github", "secret": {"datastore": "s"}, "verify_token": {"config": "vt"}}}),
    );
    assert!(
        e.contains("verify.verify_token is only for preset meta"),
        "{e}"
    );
    let e = error(
        json!({"verify": {"preset": "meta", "secret": {"datastore": "s"}, "verify_token": "open sesame"}}),
    );
    assert!(
        e.contains("verify.verify_token") && !e.contains("open sesame"),
        "{e}"
    );
}

#[test]
fn twilio_url_and_hmac_spec() {
    let policy = parsed(json!({"verify": {
        "preset": "twilio", "secret": {"datastore": "auth_token"},
        "url": "https://example.com/api/v1/webhooks/twilio"
    }}));
    assert_eq!(
        policy.verify.unwrap().preset,
        Preset::Twilio {
            url: Some("https://example.com/api/v1/webhooks/twilio".into())
        }
    );
    for bad in [
        "example.com/x",
        "ftp://example.com",
        "https://",
        "https:///path",
        "https://a b/",
    ] {
        let e = error(
            json!({"verify": {"preset": "twilio", "secret": {"datastore": "t"}, "url": bad}}),
        );
        assert!(e.contains("verify.url"), "{bad}: {e}");
    }
    let policy = parsed(json!({"verify": {
        "preset": "hmac", "secret": {"datastore": "s"},
        "header": "X-Signature", "algorithm": "sha512", "encoding": "base64", "prefix": "sha512=",
        "signed": "{header:X-Timestamp}.{body}", "timestamp_header": "X-Timestamp"
    }}));
    assert_eq!(
        policy.verify.unwrap().preset,
        Preset::Hmac(HmacSpec {
            header: "X-Signature".into(),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: "sha512=".into(),
            signed: "{header:X-Timestamp}.{body}".into(),
            timestamp_header: Some("X-Timestamp".into()),
        })
    );
    let policy = parsed(
        json!({"verify": {"preset": "hmac", "secret": {"datastore": "s"}, "header": "X-Sig"}}),
    );
    assert_eq!(
        policy.verify.unwrap().preset,
        Preset::Hmac(HmacSpec {
            header: "X-Sig".into(),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: String::new(),
            signed: "{body}".into(),
            timestamp_header: None,
        })
    );
    let policy = parsed(
        json!({"verify": {"preset": "hmac", "secret": {"datastore": "s"}, "header": "X-Sig", "algorithm": "sha1"}}),
    );
    assert!(matches!(
        policy.verify.unwrap().preset,
        Preset::Hmac(HmacSpec {
            algorithm: Algorithm::Sha1,
            ..
        })
    ));
}

#[test]
fn plain_secrets_are_refused_without_being_repeated() {
    for secret in [
        json!("s3cr3t-value"),
        json!(["s3cr3t-value"]),
        json!([{"datastore": "a"}, "s3cr3t-value"]),
    ] {
        let e = error(json!({"verify": {"preset": "github", "secret": secret}}));
        assert!(e.contains("verify.secret"), "{e}");
        assert!(
            e.contains("secret: {datastore: github_webhook_secret}"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t-value"), "{e}");
    }
    let e = error(json!({"verify": {"preset": "github", "secret": 12345}}));
    assert!(!e.contains("12345"), "{e}");
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (json!({"verify": "github"}), "verify must be a mapping"),
        (
            json!({"verify": {"secret": {"datastore": "s"}}}),
            "verify needs a preset",
        ),
        (
            json!({"verify": {"preset": 1, "secret": {"datastore": "s"}}}),
            "verify.preset must be a string",
        ),
        (
            json!({"verify": {"preset": "githb", "secret": {"datastore": "s"}}}),
            "verify.preset: unknown preset `githb` (known: github, gitea",
        ),
        (
            json!({"verify": {"preset": "github"}}),
            "verify needs a secret",
        ),
        (
            json!({"verify": {"preset": "github", "secret": []}}),
            "verify.secret needs at least one",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"vault": "s"}}}),
            "verify.secret: unknown reference `vault`",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"datastore": ""}}}),
            "verify.secret.datastore must be a non-empty key name",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"datastore": "a", "config": "b"}}}),
            "verify.secret must be",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"datastore": "s"}, "tolerence_secs": 5}}),
            "verify: unknown key `tolerence_secs`",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"datastore": "s"}, "tolerance_secs": -1}}),
            "verify.tolerance_secs",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"datastore": "s"}, "tolerance_secs": 0}}),
            "verify.tolerance_secs",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"datastore": "s"}, "tolerance_secs": "300"}}),
            "verify.tolerance_secs",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"datastore": "s"}, "require_api_key": "yes"}}),
            "verify.require_api_key must be true or false",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"datastore": "s"}, "header": "X-Sig"}}),
            "verify.header is only for preset hmac",
        ),
        (
            json!({"verify": {"preset": "github", "secret": {"datastore": "s"}, "url": "https://x"}}),
            "verify.url is only for preset twilio",
        ),
        (
            json!({"verify": {"preset": "hmac", "secret": {"datastore": "s"}}}),
            "verify.header is required for preset hmac",
        ),
        (
            json!({"verify": {"preset": "hmac", "secret": {"datastore": "s"}, "header": "bad header"}}),
            "verify.header must be an HTTP header name",
        ),
        (
            json!({"verify": {"preset": "hmac", "secret": {"datastore": "s"}, "header": "X-Sig", "algorithm": "md5"}}),
            "verify.algorithm: unknown algorithm `md5`",
        ),
        (
            json!({"verify": {"preset": "hmac", "secret": {"datastore": "s"}, "header": "X-Sig", "encoding": "base32"}}),
            "verify.encoding: unknown encoding `base32`",
        ),
        (
            json!({"verify": {"preset": "hmac", "secret": {"datastore": "s"}, "header": "X-Sig", "signed": "{payload}"}}),
            "verify.signed: unknown placeholder `{payload}`",
        ),
        (
            json!({"verify": {"preset": "hmac", "secret": {"datastore": "s"}, "header": "X-Sig", "prefix": 1}}),
            "verify.prefix must be a string",
        ),
        (
            json!({"verify": {"preset": "hmac", "secret": {"datastore": "s"}, "header": "X-Sig", "timestamp_header": ""}}),
            "verify.timestamp_header must be an HTTP header name",
        ),
        (json!({"replay": 5}), "replay must be a mapping"),
        (
            json!({"replay": {"window": 5}}),
            "replay: unknown key `window`",
        ),
        (
            json!({"replay": {"window_secs": "1d"}}),
            "replay.window_secs",
        ),
        (
            json!({"replay": {"window_secs": 1.5}}),
            "replay.window_secs",
        ),
        (
            json!({"replay": {"header": 5}}),
            "replay.header must be a header name",
        ),
        (
            json!({"replay": {"header": "bad header"}}),
            "replay.header must be an HTTP header name",
        ),
        (
            json!({"handshake": "discord"}),
            "handshake: unknown handshake `discord` (known: slack, meta, graph, zoom, twitch, dropbox)",
        ),
        (json!({"handshake": true}), "handshake must be one of"),
        (
            json!({"store_handshakes": "yes"}),
            "store_handshakes must be true or false",
        ),
    ];
    for (parameters, expected) in cases {
        let e = error(parameters.clone());
        assert!(e.contains(expected), "{parameters}: {e}");
    }
}

#[test]
fn odd_names_in_errors_are_bounded() {
    let long = "x".repeat(500);
    let e = error(json!({"verify": {"preset": long, "secret": {"datastore": "s"}}}));
    assert!(e.len() < 400, "{e}");
    let e = error(json!({"verify": {"preset": "git\nhub", "secret": {"datastore": "s"}}}));
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn only_signed_handshakes_may_be_stored_and_the_generic_hook_takes_no_policy() {
    let parse = |v: serde_json::Value| HookPolicy::parse(v.as_object().unwrap());
    let ok = parse(
        json!({"url": "s", "verify": {"preset": "slack", "secret": {"datastore": "k"}}, "store_handshakes": true}),
    );
    assert!(ok.unwrap().unwrap().store_handshakes);
    for unsigned in [
        json!({"url": "g", "handshake": "graph", "store_handshakes": true}),
        json!({"url": "s", "handshake": "slack", "store_handshakes": true}),
        json!({"url": "g", "verify": {"preset": "github", "secret": {"datastore": "k"}}, "handshake": "graph", "store_handshakes": true}),
    ] {
        let err = parse(unsigned.clone()).unwrap_err();
        assert!(
            err.contains("store_handshakes needs a handshake its sender signs"),
            "{unsigned}: {err}"
        );
    }
    for url in ["st2", "/st2/"] {
        let err = parse(json!({"url": url, "handshake": "dropbox"})).unwrap_err();
        assert!(err.contains("generic webhook"), "{err}");
    }
    assert_eq!(parse(json!({"url": "st2"})), Ok(None));
}

#[test]
fn accept_takes_four_flags_and_nothing_else() {
    let parse = |v: serde_json::Value| HookPolicy::parse(v.as_object().unwrap());
    let policy = parse(json!({"url": "x", "accept": {"get": true, "cloudevents": true}}))
        .unwrap()
        .unwrap();
    assert_eq!(
        policy.accept,
        Accept {
            get: true,
            any_content_type: false,
            raw_body: false,
            cloudevents: true
        }
    );
    assert!(policy.verify.is_none());
    let err = parse(json!({"url": "x", "accept": {"post": true}})).unwrap_err();
    assert!(err.contains("accept: unknown key `post`"), "{err}");
    let err = parse(json!({"url": "x", "accept": {"get": "yes"}})).unwrap_err();
    assert_eq!(err, "accept.get must be true or false");
}
