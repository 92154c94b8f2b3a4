//! Authentication end to end: every 401 of `docs/st2-api.md` §2.3, the credential order,
//! tokens from an htpasswd file, and the API key endpoints (§2.4).

use serde_json::{Value, json};
use stormhook_storage::{Store as _, Token};
use stormhook_tests::{TestServer, faultstring as fault, webhook_rule};

// `openssl passwd -apr1 -salt abcdefgh secret`
const HTPASSWD: &str = "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n";

async fn server() -> TestServer {
    TestServer::builder()
        .rules([webhook_rule("sample", "sample")])
        .htpasswd(HTPASSWD)
        .start()
        .await
}

async fn token(server: &TestServer) -> String {
    let resp = reqwest::Client::new()
        .post(server.url("/auth/v1/tokens"))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn every_401_of_the_contract() {
    let server = server().await;
    let anon = reqwest::Client::new();
    let url = server.url("/api/v1/webhooks");

    let resp = anon.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_none());
    assert_eq!(
        fault(resp).await,
        "Unauthorized - One of Token or API key required."
    );

    let resp = anon
        .get(&url)
        .header("X-Auth-Token", "0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(fault(resp).await, "Unauthorized");

    let resp = anon
        .get(&url)
        .header("St2-Api-Key", "not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let text = fault(resp).await;
    let hash = text
        .strip_prefix("Unauthorized - ApiKey with key_hash=")
        .and_then(|r| r.strip_suffix(" not found."))
        .unwrap_or_default();
    assert!(
        hash.len() == 128 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{text}"
    );

    // An expired token.
    let expired = "fedcba9876543210fedcba9876543210";
    let record = Token {
        id: stormhook_storage::ids::object_id(),
        user: "alice".into(),
        token: stormhook_server::auth::hash_token(expired),
        expiry: "2020-01-01T00:00:00.000000Z".into(),
        metadata: json!({}),
    };
    server.store.insert_token(&record).await.unwrap();
    let resp = anon
        .get(&url)
        .header("X-Auth-Token", expired)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(fault(resp).await, "Unauthorized - Token has expired.");

    // A disabled key.
    let created: Value = server
        .client()
        .post(server.url("/api/v1/apikeys"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, key) = (
        created["id"].as_str().unwrap(),
        created["key"].as_str().unwrap(),
    );
    let resp = server
        .client()
        .put(server.url(&format!("/api/v1/apikeys/{id}")))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = anon
        .get(&url)
        .header("St2-Api-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(fault(resp).await, "Unauthorized - API key is disabled.");
}

#[tokio::test]
async fn every_credential_form_is_accepted_and_an_invalid_one_never_falls_back() {
    let server = server().await;
    let anon = reqwest::Client::new();
    let token = token(&server).await;
    let key = &server.key;
    let base = server.url("/api/v1/webhooks");
    for request in [
        anon.get(&base).header("X-Auth-Token", &token),
        anon.get(&base).header("St2-Api-Key", key),
        anon.get(format!("{base}?x-auth-token={token}")),
        anon.get(format!("{base}?st2-api-key={key}")),
        anon.get(&base)
            .header("Cookie", format!("auth-token={token}")),
        // A valid token and a valid key: the token wins, and both are fine.
        anon.get(&base)
            .header("X-Auth-Token", &token)
            .header("St2-Api-Key", key),
    ] {
        assert_eq!(request.send().await.unwrap().status(), 200);
    }
    // An invalid token with a valid key: the token decides.
    let resp = anon
        .get(&base)
        .header("X-Auth-Token", "0123456789abcdef0123456789abcdef")
        .header("St2-Api-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Header before query.
    let resp = anon
        .get(format!("{base}?st2-api-key={key}"))
        .header("St2-Api-Key", "bad")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn tokens_come_from_the_htpasswd_file_with_bounded_ttl() {
    let server = TestServer::builder()
        .htpasswd(HTPASSWD)
        .token_ttl(std::time::Duration::from_secs(3600))
        .start()
        .await;
    let anon = reqwest::Client::new();
    for path in [
        "/auth/v1/tokens",
        "/auth/tokens",
        "/v1/tokens",
        "/tokens",
        "/auth/v1/tokens/",
    ] {
        let resp = anon
            .post(server.url(path))
            .basic_auth("alice", Some("secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{path}");
        assert_eq!(resp.headers()["x-api-url"], server.base.as_str());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["user"], "alice");
        assert_eq!(body["token"].as_str().unwrap().len(), 32);
        assert!(body["expiry"].as_str().unwrap().ends_with('Z'));
        assert_eq!(body["metadata"], json!({}));
    }
    for (user, password) in [("alice", "wrong"), ("bob", "secret")] {
        let resp = anon
            .post(server.url("/auth/v1/tokens"))
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(fault(resp).await, "Invalid or missing credentials");
    }
    let resp = anon
        .post(server.url("/auth/v1/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = anon
        .post(server.url("/auth/v1/tokens"))
        .basic_auth("alice", Some("secret"))
        .json(&json!({"ttl": 7200}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        fault(resp).await,
        "TTL specified 7200 is greater than max allowed 3600."
    );
    let resp = anon
        .post(server.url("/auth/v1/tokens"))
        .basic_auth("alice", Some("secret"))
        .json(&json!({"ttl": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let validate = |body: Value| {
        anon.post(server.url("/auth/v1/tokens/validate"))
            .header("X-Auth-Token", token.clone())
            .json(&body)
            .send()
    };
    assert_eq!(
        validate(json!({"token": token}))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        json!({"valid": true})
    );
    assert_eq!(
        validate(json!({"token": "nope"}))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        json!({"valid": false})
    );
    let resp = validate(json!({})).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(fault(resp).await, "Token is not provided.");
}

#[tokio::test]
async fn api_keys_are_shown_once_masked_in_lists_and_managed_by_id_or_key() {
    let server = server().await;
    let client = server.client();
    let resp = client
        .post(server.url("/api/v1/apikeys"))
        .json(&json!({"metadata": {"service": "github"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let (id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(created["user"], "admin", "defaults to the requester");
    assert!(created.get("key_hash").is_none());
    assert!(created["uid"].as_str().unwrap().starts_with("api_key:"));

    let resp = client
        .get(server.url("/api/v1/apikeys"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-total-count"], "2");
    assert_eq!(resp.headers()["x-limit"], "50");
    let list: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["id"], id.as_str(), "creation order");
    assert!(
        list.iter().all(|k| k["key_hash"] == "********"
            && k["uid"] == "********"
            && k.get("key").is_none())
    );
    let secrets: Vec<Value> = client
        .get(server.url("/api/v1/apikeys?show_secrets=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        secrets[1]["key_hash"],
        stormhook_server::auth::hash_api_key(&key)
    );

    for lookup in [&id, &key] {
        let one: Value = client
            .get(server.url(&format!("/api/v1/apikeys/{lookup}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(one["id"], id.as_str());
    }
    let resp = client
        .get(server.url("/api/v1/apikeys/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        fault(resp).await,
        "ApiKey matching nope for reference and id not found."
    );

    let resp = client
        .put(server.url(&format!("/api/v1/apikeys/{id}")))
        .json(&json!({"key_hash": "abc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(fault(resp).await, "Update of key_hash is not allowed.");
    let resp = client
        .post(server.url("/api/v1/apikeys"))
        .json(&json!({"foo": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        fault(resp).await,
        "Additional properties are not allowed ('foo' was unexpected)"
    );

    // Importing a hash: no key in the answer, and the original key then works.
    let imported_key = "imported-from-stackstorm";
    let resp = client
        .post(server.url("/api/v1/apikeys"))
        .json(
            &json!({"user": "st2", "key_hash": stormhook_server::auth::hash_api_key(imported_key)}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert!(resp.json::<Value>().await.unwrap()["key"].is_null());
    let resp = reqwest::Client::new()
        .get(server.url("/api/v1/webhooks"))
        .header("St2-Api-Key", imported_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let resp = client
        .delete(server.url(&format!("/api/v1/apikeys/{key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = reqwest::Client::new()
        .get(server.url("/api/v1/webhooks"))
        .header("St2-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a deleted key stops working at once");
    let resp = client
        .delete(server.url(&format!("/api/v1/apikeys/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        fault(resp).await,
        format!("ApiKey with key or id={id} not found.")
    );
}

#[tokio::test]
async fn a_token_from_a_header_or_the_query_comes_back_as_a_cookie() {
    let server = server().await;
    let anon = reqwest::Client::new();
    let token = token(&server).await;
    let url = server.url("/api/v1/webhooks");
    for request in [
        anon.get(&url).header("X-Auth-Token", &token),
        anon.get(format!("{url}?x-auth-token={token}")),
    ] {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            cookie.starts_with(&format!("auth-token={token}; Max-Age=")),
            "{cookie}"
        );
        let max_age: i64 = cookie
            .split("Max-Age=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((86_000..=86_400).contains(&max_age), "{cookie}");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=lax"),
            "{cookie}"
        );
    }
    let by_cookie = anon
        .get(&url)
        .header("Cookie", format!("auth-token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
    assert!(by_cookie.headers().get("set-cookie").is_none());
    let by_key = server.client().get(&url).send().await.unwrap();
    assert!(by_key.headers().get("set-cookie").is_none());
}

/// bcrypt is slow on purpose: password checks run one per core at most, and the rest are
/// answered 503 at once instead of queueing (an unknown user costs a check too, so without the
/// cap anyone could starve every login).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_past_one_per_core_get_503() {
    let slow = bcrypt::hash("secret", 12).unwrap();
    let server = TestServer::builder()
        .htpasswd(&format!("alice:{slow}\n"))
        .start()
        .await;
    let client = reqwest::Client::new();
    let attempts: Vec<_> = (0..12)
        .map(|i| {
            let request = client
                .post(server.url("/auth/v1/tokens"))
                .basic_auth(format!("user{i}"), Some("wrong"));
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    statuses.sort_unstable();
    assert!(statuses.contains(&401), "{statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    // Once the checks are done, logins work.
    let resp = client
        .post(server.url("/auth/v1/tokens"))
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

// st2auth test_handlers.py test_standalone_for_user_not_service (and the `impersonate_user`
// form): only service users may ask for another user's token, and no Stormhook user is one.
// Wrong credentials stay a 401 (they are checked first).
#[tokio::test]
async fn a_token_for_another_user_is_refused() {
    let server = server().await;
    let post = |password: &str, body: Value| {
        reqwest::Client::new()
            .post(server.url("/auth/v1/tokens"))
            .basic_auth("alice", Some(password))
            .json(&body)
            .send()
    };
    for body in [
        json!({"ttl": 60, "user": "anotheruser"}),
        json!({"user": "alice"}),
        json!({"impersonate_user": "bob", "nickname_origin": "slack"}),
    ] {
        let resp = post("secret", body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(
            fault(resp).await,
            "Current user is not a service and cannot request impersonated tokens"
        );
        assert_eq!(post("wrong", body).await.unwrap().status(), 401);
    }
    let resp = post("secret", json!({"ttl": 60, "user": null}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}
