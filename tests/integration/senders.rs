//! Real senders end to end (issue 17): hooks whose senders prove themselves with a signature
//! instead of an API key, replay protection by delivery id, and the handshakes answered on the
//! request path. Every request here is sent by a plain HTTP client without credentials, as
//! GitHub, Stripe or Slack would send it; signatures are computed in the test from the
//! providers' published formulas.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use stormhook_tests::{TestServer, faultstring as fault};

const GITHUB_SECRET: &str = "It's a Secret to Everybody";

fn rule(name: &str, url: &str, parameters: &str) -> (String, String) {
    (
        name.to_owned(),
        format!(
            "name: {name}\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: {url}\n{parameters}\naction:\n  ref: core.noop\n"
        ),
    )
}

fn hmac_hex(secret: &[u8], data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// A client with no credentials, as a sender is.
fn sender() -> reqwest::Client {
    reqwest::Client::new()
}

async fn put_secret(server: &TestServer, name: &str, value: &str) {
    let resp = server
        .client()
        .put(server.url(&format!("/api/v1/keys/{name}")))
        .json(&json!({"name": name, "value": value, "secret": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// The stored trigger instances of webhook `url`'s rules (newest first).
async fn instances_of(server: &TestServer, url: &str) -> Vec<Value> {
    let all = server
        .get_json("/api/v1/triggerinstances?limit=-1&trigger_type=core.st2.webhook")
        .await;
    let hooks = server.get_json("/api/v1/webhooks").await;
    let refs: Vec<&str> = hooks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["parameters"]["url"] == url)
        .filter_map(|t| t["ref"].as_str())
        .collect();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|i| refs.contains(&i["trigger"].as_str().unwrap_or_default()))
        .cloned()
        .collect()
}

async fn github_server() -> TestServer {
    let server = TestServer::builder()
        .rules([
            rule(
                "gh",
                "github",
                "    verify:\n      preset: github\n      secret:\n        - {datastore: github_secret}\n        - {datastore: github_secret_old}",
            ),
            rule(
                "gh_both",
                "github-strict",
                "    verify: {preset: github, secret: {datastore: github_secret}, require_api_key: true}",
            ),
            rule("plain", "plain", ""),
        ])
        .start()
        .await;
    put_secret(&server, "github_secret", GITHUB_SECRET).await;
    server
}

async fn post_github(
    server: &TestServer,
    url: &str,
    body: &str,
    signature: Option<String>,
    delivery: &str,
) -> reqwest::Response {
    let mut request = sender()
        .post(server.url(&format!("/api/v1/webhooks/{url}")))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", delivery)
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("X-Hub-Signature-256", signature);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_signed_delivery_is_stored_without_an_api_key_and_a_forged_one_is_not() {
    let server = github_server().await;
    let body = r#"{"ref": "refs/heads/main", "pusher": {"name": "octo"}}"#;
    let good = format!(
        "sha256={}",
        hmac_hex(GITHUB_SECRET.as_bytes(), body.as_bytes())
    );

    let resp = post_github(&server, "github", body, Some(good.clone()), "d-1").await;
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    let stored = instances_of(&server, "github").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["payload"]["body"]["pusher"]["name"], "octo");
    assert_eq!(stored[0]["payload"]["headers"]["X-Github-Event"], "push");

    // Tampered body, missing header, malformed header, wrong secret: 401 naming the check.
    let tampered = body.replace("octo", "mallory");
    let cases = [
        (
            tampered.as_str(),
            Some(good.clone()),
            "the signature in X-Hub-Signature-256 does not match",
        ),
        (body, None, "missing header X-Hub-Signature-256"),
        (body, Some("md5=abc".to_owned()), "X-Hub-Signature-256"),
        (
            body,
            Some(format!("sha256={}", hmac_hex(b"guess", body.as_bytes()))),
            "does not match",
        ),
    ];
    for (n, (body, signature, expected)) in cases.into_iter().enumerate() {
        let resp = post_github(&server, "github", body, signature, &format!("bad-{n}")).await;
        assert_eq!(resp.status(), 401, "case {n}");
        let text = fault(resp).await;
        assert!(
            text.starts_with("Webhook verification failed") && text.contains(expected),
            "case {n}: {text}"
        );
        assert!(!text.contains(GITHUB_SECRET), "{text}");
    }
    assert_eq!(
        instances_of(&server, "github").await.len(),
        1,
        "nothing stored"
    );
    let stats = server.get_json("/api/v1/senders").await;
    assert_eq!(stats["hooks"]["github"]["refused"], 4, "{stats}");

    // A hook without a policy still needs credentials, as in StackStorm.
    let resp = sender()
        .post(server.url("/api/v1/webhooks/plain"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // No answer shows the secret.
    for path in ["/api/v1/rules/t.gh", "/api/v1/webhooks", "/api/v1/senders"] {
        let text = server
            .client()
            .get(server.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains(GITHUB_SECRET), "{path}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_verifies_with_either_value_until_the_old_one_is_gone() {
    let server = github_server().await;
    let body = r#"{"n": 1}"#;
    // Rotation: the new secret is set, the old one is still configured.
    put_secret(&server, "github_secret", "new-secret").await;
    put_secret(&server, "github_secret_old", GITHUB_SECRET).await;
    for (n, secret) in ["new-secret", GITHUB_SECRET].into_iter().enumerate() {
        let signature = format!("sha256={}", hmac_hex(secret.as_bytes(), body.as_bytes()));
        let resp = post_github(&server, "github", body, Some(signature), &format!("r-{n}")).await;
        assert_eq!(resp.status(), 202, "secret {n}");
    }
    // The old value removed: deliveries signed with it are refused at once.
    let resp = server
        .client()
        .delete(server.url("/api/v1/keys/github_secret_old"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let old = format!(
        "sha256={}",
        hmac_hex(GITHUB_SECRET.as_bytes(), body.as_bytes())
    );
    let resp = post_github(&server, "github", body, Some(old), "r-3").await;
    assert_eq!(resp.status(), 401);
    assert_eq!(instances_of(&server, "github").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_can_require_the_api_key_as_well_as_the_signature() {
    let server = github_server().await;
    let body = r#"{"n": 1}"#;
    let good = format!(
        "sha256={}",
        hmac_hex(GITHUB_SECRET.as_bytes(), body.as_bytes())
    );
    let resp = post_github(&server, "github-strict", body, Some(good.clone()), "s-1").await;
    assert_eq!(resp.status(), 401, "signature alone");
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/github-strict"))
        .header("X-GitHub-Delivery", "s-2")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "API key alone");
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/github-strict"))
        .header("X-Hub-Signature-256", good)
        .header("X-GitHub-Delivery", "s-3")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_deliveries_of_one_id_store_one_instance_and_all_get_2xx() {
    let server = github_server().await;
    let body = r#"{"action": "opened"}"#;
    let signature = format!(
        "sha256={}",
        hmac_hex(GITHUB_SECRET.as_bytes(), body.as_bytes())
    );
    let mut sends = Vec::new();
    for _ in 0..50 {
        let request = sender()
            .post(server.url("/api/v1/webhooks/github"))
            .header("X-Hub-Signature-256", &signature)
            .header("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .body(body);
        sends.push(tokio::spawn(async move {
            let resp = request.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for s in sends {
        answers.push(s.await.unwrap());
    }
    let stored = answers.iter().filter(|(s, _)| *s == 202).count();
    let duplicates: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(stored, 1, "{answers:?}");
    assert_eq!(duplicates.len(), 49, "{answers:?}");
    let instances = instances_of(&server, "github").await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    // Each duplicate names the stored delivery's trace.
    let traces = server
        .get_json(&format!(
            "/api/v1/traces?trigger_instance={}",
            instances[0]["id"].as_str().unwrap()
        ))
        .await;
    let tag = traces[0]["trace_tag"].as_str().unwrap();
    for d in duplicates {
        assert_eq!(d["duplicate"], true, "{d}");
        assert_eq!(d["trace"]["trace_tag"], tag, "{d}");
    }
    let stats = server.get_json("/api/v1/senders").await;
    assert_eq!(stats["hooks"]["github"]["duplicates"], 49, "{stats}");
    // Another delivery id is stored.
    let resp = post_github(&server, "github", body, Some(signature), "another").await;
    assert_eq!(resp.status(), 202);
    assert_eq!(instances_of(&server, "github").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_deliveries_outside_the_tolerance_are_refused() {
    let server = TestServer::builder()
        .rules([rule(
            "stripe",
            "stripe",
            "    verify: {preset: stripe, secret: {datastore: stripe_secret}, tolerance_secs: 300}",
        )])
        .start()
        .await;
    let secret = "whsec_test_secret";
    put_secret(&server, "stripe_secret", secret).await;
    let body = r#"{"id": "evt_1", "type": "charge.succeeded"}"#;
    let post = |t: i64, id_suffix: &str| {
        let body = body.replace("evt_1", &format!("evt_1{id_suffix}"));
        let signature = hmac_hex(secret.as_bytes(), format!("{t}.{body}").as_bytes());
        sender()
            .post(server.url("/api/v1/webhooks/stripe"))
            .header("Stripe-Signature", format!("t={t},v1={signature}"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(post(now, "").await.unwrap().status(), 202);
    let old = post(now - 600, "b").await.unwrap();
    assert_eq!(old.status(), 401);
    let text = fault(old).await;
    assert!(text.contains("tolerance"), "{text}");
    // The same event id again (Stripe retries): acknowledged, not stored.
    let again = post(now, "").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(instances_of(&server, "stripe").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_are_answered_as_their_providers_specify_and_not_stored() {
    let server = TestServer::builder()
        .rules([
            rule(
                "slack",
                "slack",
                "    verify: {preset: slack, secret: {datastore: slack_secret}}",
            ),
            rule(
                "meta",
                "meta",
                "    verify: {preset: meta, secret: {datastore: meta_secret}, verify_token: {datastore: meta_token}}",
            ),
            rule("graph", "graph", "    handshake: graph"),
            rule(
                "zoom",
                "zoom",
                "    verify: {preset: zoom, secret: {datastore: zoom_secret}}",
            ),
            rule(
                "twitch",
                "twitch",
                "    verify: {preset: twitch, secret: {datastore: twitch_secret}}",
            ),
            rule(
                "dropbox",
                "dropbox",
                "    verify: {preset: dropbox, secret: {datastore: dropbox_secret}}",
            ),
        ])
        .start()
        .await;
    for (k, v) in [
        ("slack_secret", "slack-signing"),
        ("meta_secret", "meta-app"),
        ("meta_token", "meta-verify"),
        ("zoom_secret", "zoom-token"),
        ("twitch_secret", "twitch-secret"),
        ("dropbox_secret", "dropbox-app"),
    ] {
        put_secret(&server, k, v).await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // Slack: url_verification, signed.
    let body = r#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let signature = hmac_hex(b"slack-signing", format!("v0:{now}:{body}").as_bytes());
    let resp = sender()
        .post(server.url("/api/v1/webhooks/slack"))
        .header("X-Slack-Request-Timestamp", now.to_string())
        .header("X-Slack-Signature", format!("v0={signature}"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"),
        "{text}"
    );
    // The same handshake unsigned is refused.
    let resp = sender()
        .post(server.url("/api/v1/webhooks/slack"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Meta: a GET with hub.mode, hub.verify_token and hub.challenge; the challenge back.
    let resp = sender()
        .get(server.url(
            "/api/v1/webhooks/meta?hub.mode=subscribe&hub.verify_token=meta-verify&hub.challenge=1158201444",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "1158201444");
    let resp = sender()
        .get(server.url(
            "/api/v1/webhooks/meta?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1158201444",
        ))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_client_error(),
        "a wrong verify token: {}",
        resp.status()
    );

    // Microsoft Graph: validationToken in the query, echoed decoded as text/plain.
    let resp = sender()
        .post(server.url(
            "/api/v1/webhooks/graph?validationToken=Validation%3A%20Testing%20client%20application%20reachability",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        resp.text().await.unwrap(),
        "Validation: Testing client application reachability"
    );

    // Zoom: endpoint.url_validation, signed; encryptedToken is the HMAC of the plainToken.
    let body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let signature = hmac_hex(b"zoom-token", format!("v0:{now}:{body}").as_bytes());
    let resp = sender()
        .post(server.url("/api/v1/webhooks/zoom"))
        .header("x-zm-request-timestamp", now.to_string())
        .header("x-zm-signature", format!("v0={signature}"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        answer,
        json!({
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": hmac_hex(b"zoom-token", b"qgg8vlvZRS6UYooatFL8Aw"),
        })
    );

    // Twitch: webhook_callback_verification, signed over id + timestamp + body.
    let body = r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"webhook_callback_verification_pending","type":"channel.follow"}}"#;
    let (id, ts) = ("e76c6bd4-55c9-4987-8304-da1588d8988b", chrono_now_rfc3339());
    let signature = hmac_hex(b"twitch-secret", format!("{id}{ts}{body}").as_bytes());
    let resp = sender()
        .post(server.url("/api/v1/webhooks/twitch"))
        .header("Twitch-Eventsub-Message-Id", id)
        .header("Twitch-Eventsub-Message-Timestamp", &ts)
        .header(
            "Twitch-Eventsub-Message-Signature",
            format!("sha256={signature}"),
        )
        .header(
            "Twitch-Eventsub-Message-Type",
            "webhook_callback_verification",
        )
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        "pogchamp-kappa-360noscope-vohiyo"
    );

    // Dropbox: a GET with ?challenge=, echoed as text/plain with nosniff.
    let resp = sender()
        .get(server.url("/api/v1/webhooks/dropbox?challenge=abc123"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.text().await.unwrap(), "abc123");

    // None of them is stored as an event; each is counted.
    let stored = server
        .get_json("/api/v1/triggerinstances?limit=-1&trigger_type=core.st2.webhook")
        .await;
    assert_eq!(stored.as_array().unwrap().len(), 0, "{stored}");
    let stats = server.get_json("/api/v1/senders").await;
    for hook in ["slack", "meta", "graph", "zoom", "twitch", "dropbox"] {
        assert_eq!(stats["hooks"][hook]["handshakes"], 1, "{hook}: {stats}");
    }
    // A graph hook's ordinary deliveries still need credentials.
    let resp = sender()
        .post(server.url("/api/v1/webhooks/graph"))
        .json(&json!({"value": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_with_a_broken_policy_is_refused_and_conflicting_rules_on_one_url_are_not_mixed() {
    let server = TestServer::builder()
        .rules([rule(
            "signed",
            "shared",
            "    verify: {preset: github, secret: {datastore: s}}",
        )])
        .start()
        .await;
    // Through the API: a literal secret is refused, naming what to do instead.
    let resp = server
        .client()
        .post(server.url("/api/v1/rules"))
        .json(&json!({
            "name": "literal", "pack": "t", "enabled": true,
            "trigger": {"type": "core.st2.webhook",
                        "parameters": {"url": "x", "verify": {"preset": "github", "secret": "hunter2"}}},
            "action": {"ref": "core.noop"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = fault(resp).await;
    assert!(text.contains("datastore"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // An unknown preset is refused, listing the known ones.
    let resp = server
        .client()
        .post(server.url("/api/v1/rules"))
        .json(&json!({
            "name": "unknown", "pack": "t", "enabled": true,
            "trigger": {"type": "core.st2.webhook",
                        "parameters": {"url": "x", "verify": {"preset": "githab", "secret": {"datastore": "s"}}}},
            "action": {"ref": "core.noop"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = fault(resp).await;
    assert!(text.contains("githab") && text.contains("github"), "{text}");
    // An enabled rule on the same url without the policy is refused, naming the rule that
    // holds the url; a disabled one is accepted but not registered on the hook: an unsigned
    // delivery must never reach it.
    let open = |enabled: bool| {
        json!({
            "name": "open", "pack": "t", "enabled": enabled,
            "trigger": {"type": "core.st2.webhook", "parameters": {"url": "shared"}},
            "action": {"ref": "core.noop"},
        })
    };
    let resp = server
        .client()
        .post(server.url("/api/v1/rules"))
        .json(&open(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = fault(resp).await;
    assert!(
        text.contains("already has other sender parameters") && text.contains("t.signed"),
        "{text}"
    );
    let resp = server
        .client()
        .post(server.url("/api/v1/rules"))
        .json(&open(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let hooks = server.get_json("/api/v1/webhooks").await;
    let on_shared: Vec<&Value> = hooks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["parameters"]["url"] == "shared")
        .collect();
    assert_eq!(on_shared.len(), 1, "{hooks}");
    assert!(on_shared[0]["parameters"].get("verify").is_some());
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/shared"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "the API key does not replace the signature"
    );
}

fn chrono_now_rfc3339() -> String {
    // RFC 3339 with nanoseconds, as Twitch sends it.
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_token_is_not_stored_and_the_generic_hook_cannot_reach_a_signed_hook() {
    let server = TestServer::builder()
        .rules([rule(
            "gl",
            "gitlab",
            "    verify: {preset: gitlab, secret: {datastore: gitlab_token}}",
        )])
        .start()
        .await;
    put_secret(&server, "gitlab_token", "glpat-token-value").await;
    let resp = sender()
        .post(server.url("/api/v1/webhooks/gitlab"))
        .header("X-Gitlab-Token", "glpat-token-value")
        .header("X-Gitlab-Event", "Push Hook")
        .json(&json!({"object_kind": "push"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let stored = instances_of(&server, "gitlab").await;
    assert_eq!(stored.len(), 1);
    let text = stored[0].to_string();
    assert!(!text.contains("glpat-token-value"), "{text}");
    assert_eq!(
        stored[0]["payload"]["headers"]["X-Gitlab-Event"],
        "Push Hook"
    );
    let resp = sender()
        .post(server.url("/api/v1/webhooks/gitlab"))
        .header("X-Gitlab-Token", "glpat-token-valuf")
        .json(&json!({"object_kind": "push"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(fault(resp).await.contains("X-Gitlab-Token"));

    // With an API key, the generic webhook names the signed hook's trigger: refused.
    let hooks = server.get_json("/api/v1/webhooks").await;
    let trigger = hooks[0]["ref"].as_str().unwrap().to_owned();
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/st2"))
        .json(&json!({"trigger": trigger, "payload": {"object_kind": "forged"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(fault(resp).await.contains("verifies its sender"));
    assert_eq!(instances_of(&server, "gitlab").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_computes_the_answer_and_its_failures_fall_back_within_its_deadline() {
    let respond = |store_on_failure: bool| {
        format!(
            "    respond: {{entry_point: responder_probe.wasm, timeout_ms: 300, store_on_failure: {store_on_failure}}}"
        )
    };
    let server = TestServer::builder()
        .rule_component("responder_probe")
        .rules([
            rule("answering", "answering", &respond(true)),
            rule("strict", "strict", &respond(false)),
        ])
        .start()
        .await;
    let post = |url: &'static str, what: &'static str| {
        server
            .client()
            .post(server.url(&format!("/api/v1/webhooks/{url}?x=1")))
            .json(&json!({"do": what}))
            .send()
    };

    // Its answer, sent once the delivery is stored.
    let resp = post("answering", "answer").await.unwrap();
    assert_eq!(resp.status(), 201);
    let types: Vec<_> = resp.headers().get_all("content-type").iter().collect();
    assert_eq!(
        types,
        ["application/json"],
        "one content type, the responder's"
    );
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["hook"], "answering");
    assert_eq!(answer["method"], "POST");
    assert_eq!(answer["query"], "x=1");
    assert_eq!(answer["body"]["do"], "answer");
    let stored = instances_of(&server, "answering").await;
    assert_eq!(stored.len(), 1);
    let traces = server
        .get_json(&format!(
            "/api/v1/traces?trigger_instance={}",
            stored[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(answer["trace_tag"], traces[0]["trace_tag"]);

    // It may answer without storing.
    let resp = post("answering", "skip").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "not stored");
    assert_eq!(instances_of(&server, "answering").await.len(), 1);

    // A loop, a trap, an error, an answer no response may carry: the fallback (202 and the
    // body, stored), within the responder's deadline.
    for (n, what) in ["loop", "trap", "fail", "bad_status"]
        .into_iter()
        .enumerate()
    {
        let started = std::time::Instant::now();
        let resp = post("answering", what).await.unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status(), 202, "{what}");
        let note = resp.headers()["stormhook-responder"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(note.starts_with("failed ("), "{what}: {note}");
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({"do": what}));
        assert!(
            took < std::time::Duration::from_secs(5),
            "{what}: the fallback took {took:?} (deadline 300 ms)"
        );
        assert_eq!(
            instances_of(&server, "answering").await.len(),
            2 + n,
            "{what}"
        );
    }
    // A hook that stores nothing when its responder fails: 502, nothing stored.
    let resp = post("strict", "trap").await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(fault(resp).await.contains("responder failed"));
    assert_eq!(instances_of(&server, "strict").await.len(), 0);
    let stats = server.get_json("/api/v1/senders").await;
    assert_eq!(
        stats["hooks"]["answering"]["responder_failures"], 4,
        "{stats}"
    );
    assert_eq!(stats["hooks"]["strict"]["responder_failures"], 1, "{stats}");

    // Through the API, a rule cannot name a responder (components come from pack folders).
    let resp = server
        .client()
        .post(server.url("/api/v1/rules"))
        .json(&json!({
            "name": "api_responder", "pack": "t",
            "trigger": {"type": "core.st2.webhook",
                        "parameters": {"url": "y", "respond": {"entry_point": "r.wasm"}}},
            "action": {"ref": "core.noop"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(fault(resp).await.contains("pack folder"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_slash_command_is_answered_in_the_channel_and_stored() {
    let server = TestServer::builder().examples().start().await;
    put_secret(&server, "slack_signing_secret", "slack-signing").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let command = |text: &str| {
        let body = format!(
            "token=x&team_id=T1&user_name=ada&command=%2Fdeploy&text={text}&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1"
        );
        let signature = hmac_hex(b"slack-signing", format!("v0:{now}:{body}").as_bytes());
        sender()
            .post(server.url("/api/v1/webhooks/slack/commands"))
            .header("X-Slack-Request-Timestamp", now.to_string())
            .header("X-Slack-Signature", format!("v0={signature}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let resp = command("prod").await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["response_type"], "in_channel", "{answer}");
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains("ada asked for `/deploy prod`"), "{text}");
    let stored = instances_of(&server, "slack/commands").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["payload"]["body"]["text"], json!(["prod"]));
    // Without an environment: its usage, to the user only, and nothing stored.
    let resp = command("").await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    assert_eq!(instances_of(&server, "slack/commands").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_take_get_any_content_type_raw_bodies_and_cloudevents_when_they_say_so() {
    let server = TestServer::builder()
        .rules([
            rule("get", "status/ping", "    accept: {get: true}"),
            rule(
                "anything",
                "anything",
                "    accept: {any_content_type: true, raw_body: true}",
            ),
            rule("events", "events", "    accept: {cloudevents: true}"),
            rule("plain", "plain", ""),
        ])
        .start()
        .await;
    let last = |url: &'static str| {
        let server = &server;
        async move {
            let stored = instances_of(server, url).await;
            stored.first().cloned().unwrap_or(Value::Null)["payload"].clone()
        }
    };

    // GET deliveries, the query in the payload (lists, as form bodies), with credentials.
    let resp = server
        .client()
        .get(server.url("/api/v1/webhooks/status/ping?state=down&state=flapping&host=db1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let payload = last("status/ping").await;
    assert_eq!(
        payload["query"],
        json!({"state": ["down", "flapping"], "host": ["db1"]})
    );
    assert_eq!(payload["body"], json!({}));
    let resp = sender()
        .get(server.url("/api/v1/webhooks/status/ping?state=up"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "a GET delivery needs credentials like a POST"
    );
    // A HEAD stores nothing.
    let resp = server
        .client()
        .head(server.url("/api/v1/webhooks/status/ping?state=up"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(instances_of(&server, "status/ping").await.len(), 1);
    // A hook that does not take GET: StackStorm's GET of the webhook, unchanged.
    let resp = server.get_json("/api/v1/webhooks/plain").await;
    assert_eq!(resp["type"], "core.st2.webhook");

    // Any content type, as text or base64 with its media type; the raw body beside it.
    let xml = "<order id=\"7\"><total>3.50</total></order>";
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/anything"))
        .header("Content-Type", "application/xml; charset=utf-8")
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let payload = last("anything").await;
    assert_eq!(
        payload["body"],
        json!({"text": xml, "media_type": "application/xml"})
    );
    assert_eq!(payload["raw_body"], xml);
    let binary = vec![0u8, 159, 146, 150, 255];
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/anything"))
        .header("Content-Type", "application/octet-stream")
        .body(binary)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let payload = last("anything").await;
    assert_eq!(
        payload["body"],
        json!({"base64": "AJ+Slv8=", "media_type": "application/octet-stream"})
    );
    let spaced = "{ \"a\" :  1 }";
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/anything"))
        .header("Content-Type", "application/json")
        .body(spaced)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let payload = last("anything").await;
    assert_eq!(payload["body"], json!({"a": 1}));
    assert_eq!(payload["raw_body"], spaced, "the bytes as received");
    // text/plain that is not JSON is text there; StackStorm's default still refuses it.
    for (url, expected) in [("anything", 202), ("plain", 400)] {
        let resp = server
            .client()
            .post(server.url(&format!("/api/v1/webhooks/{url}")))
            .header("Content-Type", "text/plain")
            .body("just words")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected, "{url}");
    }
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/plain"))
        .header("Content-Type", "application/xml")
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(fault(resp).await.contains("Unsupported Content-Type"));

    // CloudEvents, structured: the data is the body, the attributes beside it, and source +
    // id make a retry a duplicate.
    let event = json!({
        "specversion": "1.0", "type": "com.example.order.paid", "source": "/shop/orders",
        "id": "A234-1234-1234", "time": "2026-12-01T10:00:00Z",
        "datacontenttype": "application/json", "data": {"order": 7, "total": 3.5},
    });
    for expected in [202, 200] {
        let resp = server
            .client()
            .post(server.url("/api/v1/webhooks/events"))
            .header(
                "Content-Type",
                "application/cloudevents+json; charset=utf-8",
            )
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
    }
    let payload = last("events").await;
    assert_eq!(payload["body"], json!({"order": 7, "total": 3.5}));
    assert_eq!(payload["cloudevent"]["type"], "com.example.order.paid");
    assert_eq!(payload["cloudevent"]["id"], "A234-1234-1234");
    assert!(payload["cloudevent"].get("data").is_none());
    // Binary mode: ce-* headers, the body as its content type says.
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/events"))
        .header("ce-specversion", "1.0")
        .header("ce-type", "com.example.order.shipped")
        .header("ce-source", "/shop/orders")
        .header("ce-id", "B1")
        .header("Content-Type", "application/json")
        .body(r#"{"order": 8}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let payload = last("events").await;
    assert_eq!(payload["body"], json!({"order": 8}));
    assert_eq!(payload["cloudevent"]["type"], "com.example.order.shipped");
    assert_eq!(payload["cloudevent"]["datacontenttype"], "application/json");
    assert_eq!(instances_of(&server, "events").await.len(), 2);
    // A structured event without its required attributes is refused.
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/events"))
        .header("Content-Type", "application/cloudevents+json")
        .body(r#"{"specversion": "1.0", "type": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(fault(resp).await.contains("`id`"));
}
