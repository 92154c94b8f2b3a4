//! The datastore end to end: the plugins' `Datastore` (in memory and over the store) under
//! concurrency, secrets and expiry through `/api/v1/keys`, and `decrypt_kv` in templates.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stormhook_automation::datastore::StoreDatastore;
use stormhook_runtime::datastore::{Datastore, DatastoreError, MemoryDatastore};
use stormhook_storage::Store;
use stormhook_storage::sqlite::SqliteStore;
use stormhook_tests::{TestServer, eventually, faultstring};

/// 200 concurrent increments give exactly 200, and 50 read / compare-and-swap loops that
/// each add their number to a sum lose no update.
async fn no_update_is_lost(datastore: Arc<dyn Datastore>) {
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let datastore = Arc::clone(&datastore);
            tokio::spawn(async move { datastore.increment("counter", 1).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=200).collect::<Vec<i64>>());
    assert_eq!(
        datastore.get("counter").await.unwrap().unwrap().value,
        "200"
    );

    let tasks: Vec<_> = (1..=50)
        .map(|n: i64| {
            let datastore = Arc::clone(&datastore);
            tokio::spawn(async move {
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let current = datastore.get("sum").await.unwrap().map(|e| e.value);
                    let sum = current.as_deref().map_or(0, |v| v.parse::<i64>().unwrap());
                    let next = (sum + n).to_string();
                    if datastore
                        .compare_and_swap("sum", current.as_deref(), &next)
                        .await
                        .unwrap()
                    {
                        return attempts;
                    }
                }
            })
        })
        .collect();
    let mut attempts = 0;
    for task in tasks {
        attempts += task.await.unwrap();
    }
    assert_eq!(
        datastore.get("sum").await.unwrap().unwrap().value,
        (1..=50).sum::<i64>().to_string()
    );
    assert!(attempts >= 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_datastore_loses_no_update_under_concurrency() {
    no_update_is_lost(Arc::new(MemoryDatastore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_datastore_loses_no_update_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
    no_update_is_lost(Arc::new(StoreDatastore::new(store))).await;
}

/// The rules every `Datastore` keeps, checked on both.
async fn datastore_rules(datastore: &dyn Datastore, make_secret: impl AsyncFnOnce(&str, &str)) {
    // TTL: a key set with one disappears; increment keeps it, set without one removes it.
    datastore
        .set("short", "1", Some(Duration::from_millis(50)))
        .await
        .unwrap();
    assert_eq!(datastore.increment("short", 1).await.unwrap(), 2);
    eventually(
        Duration::from_secs(5),
        "`short` to expire",
        async || match datastore.get("short").await.unwrap() {
            None => Ok(()),
            Some(e) => Err(e.value),
        },
    )
    .await;
    assert_eq!(
        datastore.increment("short", 1).await.unwrap(),
        1,
        "starts again"
    );

    datastore.set("word", "hello", None).await.unwrap();
    assert!(matches!(
        datastore.increment("word", 1).await,
        Err(DatastoreError::Invalid(m)) if !m.contains("hello")
    ));
    assert!(!datastore.compare_and_swap("word", None, "x").await.unwrap());
    assert!(
        datastore
            .compare_and_swap("word", Some("hello"), "bye")
            .await
            .unwrap()
    );
    assert!(datastore.delete("word").await.unwrap());
    assert!(!datastore.delete("word").await.unwrap());

    // Secrets: read decrypted and marked; a set keeps them secret; no atomic operation.
    make_secret("token", "xoxb-1").await;
    let entry = datastore.get("token").await.unwrap().unwrap();
    assert_eq!((entry.value.as_str(), entry.secret), ("xoxb-1", true));
    datastore.set("token", "xoxb-2", None).await.unwrap();
    let entry = datastore.get("token").await.unwrap().unwrap();
    assert_eq!((entry.value.as_str(), entry.secret), ("xoxb-2", true));
    assert!(matches!(
        datastore.increment("token", 1).await,
        Err(DatastoreError::Invalid(m)) if m.contains("secret")
    ));
    assert!(matches!(
        datastore.compare_and_swap("token", Some("xoxb-2"), "guess").await,
        Err(DatastoreError::Invalid(m)) if m.contains("secret") && !m.contains("xoxb")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_datastores_keep_the_same_rules() {
    let memory = MemoryDatastore::default();
    datastore_rules(&memory, async |k, v| memory.set_secret(k, v)).await;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
    let datastore = StoreDatastore::new(Arc::clone(&store));
    datastore_rules(&datastore, async |k, v| {
        store
            .kv_put(k, stormhook_storage::KvValue::Secret(v), None)
            .await
            .unwrap();
    })
    .await;
}

async fn put(server: &TestServer, name: &str, body: Value) -> reqwest::Response {
    server
        .client()
        .put(server.url(&format!("/api/v1/keys/{name}")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_stored_encrypted_and_shown_decrypted_only_when_asked() {
    let server = TestServer::builder().start().await;
    let resp = put(
        &server,
        "api_token",
        json!({"name": "api_token", "scope": "system", "user": null, "value": "tok-123", "secret": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let stored: Value = resp.json().await.unwrap();
    let ciphertext = stored["value"].as_str().unwrap().to_owned();
    assert_ne!(ciphertext, "tok-123");
    assert_eq!(stored["secret"], true);
    assert_eq!(stored["encrypted"], true);
    assert!(stored.get("expire_timestamp").is_none());
    // The key file was made in the data directory, readable by its owner only.
    let key_file = server.dir.path().join("keys/datastore_key.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key = stormhook_storage::crypto::DatastoreKey::read(&key_file).unwrap();
    assert_eq!(key.decrypt(&ciphertext).unwrap(), "tok-123");

    let masked = server.get_json("/api/v1/keys/api_token").await;
    assert_eq!(masked["value"], ciphertext.as_str());
    assert_eq!(
        (&masked["secret"], &masked["encrypted"]),
        (&json!(true), &json!(true))
    );
    let shown = server.get_json("/api/v1/keys/api_token?decrypt=true").await;
    assert_eq!(shown["value"], "tok-123");
    assert_eq!(
        (&shown["secret"], &shown["encrypted"]),
        (&json!(true), &json!(false))
    );
    let listed = server.get_json("/api/v1/keys?prefix=api").await;
    assert_eq!(listed[0]["value"], ciphertext.as_str());
    let listed = server.get_json("/api/v1/keys?decrypt=true").await;
    assert_eq!(listed[0]["value"], "tok-123");

    // `encrypted: true` (st2 key load): a ciphertext of this key is kept as it is...
    let exported = key.encrypt("imported").unwrap();
    let resp = put(
        &server,
        "imported",
        json!({"name": "imported", "value": exported, "encrypted": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let stored: Value = resp.json().await.unwrap();
    assert_eq!(stored["value"], exported.as_str());
    assert_eq!(stored["secret"], true, "encrypted implies secret");
    let shown = server.get_json("/api/v1/keys/imported?decrypt=true").await;
    assert_eq!(shown["value"], "imported");
    // ... and one of another key, or garbage, is refused with StackStorm's message.
    let foreign = stormhook_storage::crypto::DatastoreKey::generate()
        .unwrap()
        .encrypt("x")
        .unwrap();
    for value in [foreign.as_str(), "plain text"] {
        let resp = put(&server, "bad", json!({"value": value, "encrypted": true})).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(
            faultstring(resp).await,
            "Failed to verify the integrity of the provided value for key \"bad\". Ensure that the value is encrypted with the correct key and not corrupted."
        );
    }
    let resp = put(&server, "bad", json!({"value": "x", "secret": "yes"})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(faultstring(resp).await, "'yes' is not of type 'boolean'");

    // A plain PUT replaces the secret with a plain value.
    let resp = put(&server, "api_token", json!({"value": "public"})).await;
    let stored: Value = resp.json().await.unwrap();
    assert_eq!(
        (&stored["value"], &stored["secret"]),
        (&json!("public"), &json!(false))
    );

    // Nothing in the database holds a plaintext secret.
    let db = std::fs::read(server.dir.path().join("stormhook.db")).unwrap();
    let wal = std::fs::read(server.dir.path().join("stormhook.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(7).any(|w| w == b"tok-123"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_sets_expire_timestamp_and_the_key_then_disappears() {
    let server = TestServer::builder().start().await;
    let resp = put(&server, "session", json!({"value": "abc", "ttl": 3600})).await;
    assert_eq!(resp.status(), 200);
    let stored: Value = resp.json().await.unwrap();
    let expires = stored["expire_timestamp"].as_str().unwrap();
    let expires = stormhook_storage::ids::parse_time(expires).unwrap();
    let now = stormhook_storage::ids::parse_time(&stormhook_storage::ids::now()).unwrap();
    let ahead = expires.signed_duration_since(now).num_seconds();
    assert!((3590..=3600).contains(&ahead), "{ahead}");
    let got = server.get_json("/api/v1/keys/session").await;
    assert_eq!(got["expire_timestamp"], stored["expire_timestamp"]);

    for (ttl, message) in [
        (
            json!(-5),
            "ttl must be a positive number of seconds, got -5",
        ),
        (json!("60"), "'60' is not of type 'integer'"),
        (json!(1.5), "1.5 is not of type 'integer'"),
    ] {
        let resp = put(&server, "bad", json!({"value": "v", "ttl": ttl})).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(faultstring(resp).await, message);
    }
    // ttl 0 (falsy, as in StackStorm) and null store a key that does not expire.
    for ttl in [json!(0), Value::Null] {
        let resp = put(&server, "forever", json!({"value": "v", "ttl": ttl})).await;
        let stored: Value = resp.json().await.unwrap();
        assert!(stored.get("expire_timestamp").is_none(), "{stored}");
    }

    let resp = put(&server, "brief", json!({"value": "v", "ttl": 1})).await;
    assert_eq!(resp.status(), 200);
    eventually(Duration::from_secs(10), "`brief` to expire", async || {
        let resp = server
            .client()
            .get(server.url("/api/v1/keys/brief"))
            .send()
            .await
            .unwrap();
        if resp.status() == 404 {
            return Ok(());
        }
        Err(resp.status().to_string())
    })
    .await;
    let listed = server.get_json("/api/v1/keys?prefix=brief").await;
    assert_eq!(listed, json!([]));
    let gone = server
        .client()
        .delete(server.url("/api/v1/keys/brief"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_see_the_ciphertext_and_decrypt_kv_decrypts_it() {
    let server = TestServer::builder().start().await;
    let resp = put(
        &server,
        "token",
        json!({"value": "xoxb-secret", "secret": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let ciphertext = resp.json::<Value>().await.unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();

    let run = async |message: &str| -> Value {
        let resp = server
            .client()
            .post(server.url("/api/v1/executions"))
            .json(&json!({"action": "core.echo", "parameters": {"message": message}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let id = resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        eventually(
            Duration::from_secs(20),
            "the execution to finish",
            async || {
                let e = server.get_json(&format!("/api/v1/executions/{id}")).await;
                match e["status"].as_str() {
                    Some("succeeded" | "failed") => Ok(e),
                    _ => Err(e.to_string()),
                }
            },
        )
        .await
    };
    let decrypted = run("Bearer {{ st2kv.system.token | decrypt_kv }}").await;
    assert_eq!(decrypted["result"]["stdout"], "Bearer xoxb-secret");
    let raw = run("{{ st2kv.system.token }}").await;
    assert_eq!(raw["result"]["stdout"], ciphertext.as_str());
}

/// `test_kvps.py` `test_get_all_user_query_param_can_only_be_used_with_rbac`,
/// `test_get_one_user_query_param_can_only_be_used_with_rbac` and `test_put_invalid_scope`:
/// without RBAC no caller may name another user, and a scope StackStorm does not know is
/// refused with its message.
#[tokio::test]
async fn other_users_and_unknown_scopes_are_refused() {
    let server = TestServer::builder().start().await;
    let client = server.client();
    assert_eq!(
        put(&server, "keystone_version", json!({"value": "v3"}))
            .await
            .status(),
        200
    );
    let forbidden = "\"user\" attribute can only be provided by admins when RBAC is enabled";
    for (method, path) in [
        ("GET", "/v1/keys?user=foousera"),
        ("GET", "/v1/keys/keystone_endpoint?user=foousera"),
        ("DELETE", "/v1/keys/keystone_version?user=foousera"),
    ] {
        let request = match method {
            "GET" => client.get(server.url(path)),
            _ => client.delete(server.url(path)),
        };
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{method} {path}");
        assert_eq!(faultstring(resp).await, forbidden, "{method} {path}");
    }
    let resp = put(
        &server,
        "keystone_version",
        json!({"value": "v3", "user": "foousera"}),
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(faultstring(resp).await, forbidden);

    let invalid = "Scope st2kv.st2 is not in allowed scopes list: ['system', 'user', 'st2kv.system', 'st2kv.user'].";
    let resp = client
        .put(server.url("/v1/keys/keystone_version?scope=st2"))
        .json(&json!({"name": "keystone_version", "value": "v3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(faultstring(resp).await, invalid);
    let resp = put(
        &server,
        "keystone_version",
        json!({"value": "v3", "scope": "st2"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(faultstring(resp).await, invalid);
    // The system scope, however written, is fine.
    for scope in ["system", "st2kv.system", "all"] {
        let resp = client
            .put(server.url(&format!("/v1/keys/keystone_version?scope={scope}")))
            .json(&json!({"value": "v3"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scope}");
    }
    // The value is still there: nothing above deleted it.
    assert_eq!(
        server.get_json("/v1/keys/keystone_version").await["value"],
        "v3"
    );
}
