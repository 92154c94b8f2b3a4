//! The datastore in the store: expiry, secrets encrypted at rest, and the atomic operations
//! under concurrency, on SQLite and on PostgreSQL (see `common/backends.rs`).

use std::sync::Arc;
use std::time::Duration;

use stormhook_storage::crypto::DatastoreKey;
use stormhook_storage::{KvValue, StorageError};

#[macro_use]
#[path = "common/backends.rs"]
mod backends;

use backends::Backend;

on_both_backends!(
    secrets_are_encrypted_at_rest_with_a_key_made_on_first_use,
    pre_encrypted_values_must_decrypt_with_the_key_and_are_kept_as_they_are,
    an_operator_key_file_is_used_and_a_broken_one_refused,
    expired_pairs_are_invisible_and_purged_by_later_writes,
    list_filters_by_prefix_and_pages,
    increment_and_compare_and_swap_semantics,
    concurrent_increments_and_cas_loops_lose_no_update,
);

async fn secrets_are_encrypted_at_rest_with_a_key_made_on_first_use(backend: &Backend) {
    let store = &backend.store;
    store.kv_set("plain", "visible").await.unwrap();
    assert!(!backend.key_file().exists(), "no secret yet, no key file");
    let stored = store
        .kv_put("token", KvValue::Secret("s3cr3t-value"), None)
        .await
        .unwrap();
    assert!(stored.secret);
    assert_ne!(stored.value, "s3cr3t-value");
    assert!(backend.key_file().exists());
    let key = store.datastore_key().unwrap();
    assert_eq!(key.decrypt(&stored.value).unwrap(), "s3cr3t-value");

    // Nothing in the database file holds the plaintext.
    let rows = backend.raw_kv().await;
    assert_eq!(rows[1].0, "token");
    assert!(rows[1].2);
    assert!(!rows.iter().any(|r| r.1.contains("s3cr3t")));
    // Reads and templates get the ciphertext.
    let read = store.kv_get("token").await.unwrap().unwrap();
    assert_eq!(read, stored);
    assert!(
        store
            .kv_all()
            .await
            .unwrap()
            .contains(&("token".into(), stored.value.clone()))
    );

    // Reopened, the same key file decrypts it.
    let store = backend.reopen().await;
    let read = store.kv_get("token").await.unwrap().unwrap();
    assert_eq!(
        store.datastore_key().unwrap().decrypt(&read.value).unwrap(),
        "s3cr3t-value"
    );
}

async fn pre_encrypted_values_must_decrypt_with_the_key_and_are_kept_as_they_are(
    backend: &Backend,
) {
    let store = &backend.store;
    let ciphertext = store.datastore_key().unwrap().encrypt("imported").unwrap();
    let stored = store
        .kv_put("imported", KvValue::Encrypted(&ciphertext), None)
        .await
        .unwrap();
    assert_eq!(stored.value, ciphertext, "stored as it is");
    assert!(stored.secret);

    let foreign = DatastoreKey::generate().unwrap().encrypt("x").unwrap();
    for bad in [foreign.as_str(), "not a ciphertext", ""] {
        match store.kv_put("bad", KvValue::Encrypted(bad), None).await {
            Err(StorageError::Invalid(m)) => assert!(
                m.starts_with(
                    "Failed to verify the integrity of the provided value for key \"bad\""
                ),
                "{m}"
            ),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert!(store.kv_get("bad").await.unwrap().is_none());
}

async fn an_operator_key_file_is_used_and_a_broken_one_refused(backend: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("st2_datastore_key.json");
    let key = DatastoreKey::generate().unwrap();
    std::fs::write(&key_path, key.to_json()).unwrap();
    let store = backend.reopen_with_key(&key_path).await.unwrap();
    let stored = store.kv_put("k", KvValue::Secret("v"), None).await.unwrap();
    assert_eq!(key.decrypt(&stored.value).unwrap(), "v");
    assert!(!backend.key_file().exists());

    std::fs::write(&key_path, "{\"aesKeyString\": 1}").unwrap();
    let Err(err) = backend.reopen_with_key(&key_path).await else {
        panic!("a broken key file was accepted");
    };
    let err = err.to_string();
    assert!(err.contains("st2_datastore_key.json"), "{err}");
    assert!(err.contains("aesKeyString"), "{err}");
    assert!(
        backend
            .reopen_with_key(&dir.path().join("none.json"))
            .await
            .is_err()
    );
}

async fn expired_pairs_are_invisible_and_purged_by_later_writes(backend: &Backend) {
    let store = &backend.store;
    // Long enough for the calls below to see it on a loaded machine (a first call on
    // PostgreSQL opens connections).
    let short_ttl = Duration::from_millis(800);
    let put_at = tokio::time::Instant::now();
    let short = store
        .kv_put("short", KvValue::Plain("1"), Some(short_ttl))
        .await
        .unwrap();
    let long = store
        .kv_put("long", KvValue::Plain("2"), Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(short.expire_timestamp.is_some());
    let long_expiry = long.expire_timestamp.clone().unwrap();
    assert!(
        long_expiry.ends_with('Z') && long_expiry.len() == 27,
        "{long_expiry}"
    );
    assert!(store.kv_get("short").await.unwrap().is_some());
    // Expiry is a wall-clock time in the database, so real time has to pass.
    tokio::time::sleep_until(put_at + short_ttl + Duration::from_millis(100)).await;

    assert!(store.kv_get("short").await.unwrap().is_none());
    assert_eq!(
        store.kv_all().await.unwrap(),
        [("long".to_owned(), "2".to_owned())]
    );
    let page = store.kv_list("", None, 0).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(
        page.items[0].expire_timestamp.as_deref(),
        Some(&*long_expiry)
    );
    assert!(
        !store.kv_delete("short").await.unwrap(),
        "expired: did not exist"
    );
    // An expired counter starts again from 0, and CAS sees it as absent.
    store
        .kv_put("n", KvValue::Plain("41"), Some(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.kv_increment("n", 1).await.unwrap(), 1);
    store
        .kv_put("c", KvValue::Plain("old"), Some(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !store
            .kv_compare_and_swap("c", Some("old"), "x")
            .await
            .unwrap()
    );
    assert!(store.kv_compare_and_swap("c", None, "new").await.unwrap());

    // A write purges what has expired (here `short` went with the delete; add more).
    for i in 0..5 {
        store
            .kv_put(
                &format!("gone.{i}"),
                KvValue::Plain("v"),
                Some(Duration::from_millis(1)),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.kv_set("trigger", "purge").await.unwrap();
    let names: Vec<String> = backend.raw_kv().await.into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["c", "long", "n", "trigger"]);
}

async fn list_filters_by_prefix_and_pages(backend: &Backend) {
    let store = &backend.store;
    for name in ["app.a", "app.b", "app.c", "apple", "b%", "b_x", "other"] {
        store.kv_set(name, "v").await.unwrap();
    }
    let page = store.kv_list("app.", Some(2), 1).await.unwrap();
    assert_eq!(page.total, 3);
    let names: Vec<&str> = page.items.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["app.b", "app.c"]);
    // The prefix is text, not a LIKE pattern.
    let page = store.kv_list("b%", None, 0).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(store.kv_list("", None, 0).await.unwrap().total, 7);
}

async fn increment_and_compare_and_swap_semantics(backend: &Backend) {
    let store = &backend.store;
    assert_eq!(store.kv_increment("n", 5).await.unwrap(), 5);
    assert_eq!(store.kv_increment("n", -7).await.unwrap(), -2);
    store.kv_set("n", " 10 ").await.unwrap();
    assert_eq!(store.kv_increment("n", 1).await.unwrap(), 11);

    store.kv_set("word", "hello").await.unwrap();
    let err = store.kv_increment("word", 1).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Invalid(m) if !m.contains("hello")),
        "{err}"
    );
    store.kv_set("max", &i64::MAX.to_string()).await.unwrap();
    assert!(matches!(
        store.kv_increment("max", 1).await,
        Err(StorageError::Invalid(m)) if m.contains("overflows")
    ));
    assert_eq!(
        store.kv_get("max").await.unwrap().unwrap().value,
        i64::MAX.to_string(),
        "a refused increment writes nothing"
    );

    // The TTL survives an increment and a compare-and-swap.
    let put = store
        .kv_put("window", KvValue::Plain("0"), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    store.kv_increment("window", 3).await.unwrap();
    assert!(
        store
            .kv_compare_and_swap("window", Some("3"), "4")
            .await
            .unwrap()
    );
    let after = store.kv_get("window").await.unwrap().unwrap();
    assert_eq!(after.value, "4");
    assert_eq!(after.expire_timestamp, put.expire_timestamp);

    assert!(store.kv_compare_and_swap("fresh", None, "a").await.unwrap());
    assert!(!store.kv_compare_and_swap("fresh", None, "b").await.unwrap());
    assert!(
        !store
            .kv_compare_and_swap("fresh", Some("b"), "c")
            .await
            .unwrap()
    );
    assert!(
        store
            .kv_compare_and_swap("fresh", Some("a"), "c")
            .await
            .unwrap()
    );
    assert_eq!(store.kv_get("fresh").await.unwrap().unwrap().value, "c");
    assert!(
        !store
            .kv_compare_and_swap("missing", Some("x"), "y")
            .await
            .unwrap()
    );

    // Secrets: neither operation, and nothing about the value is said.
    store
        .kv_put("token", KvValue::Secret("abc"), None)
        .await
        .unwrap();
    assert!(matches!(
        store.kv_increment("token", 1).await,
        Err(StorageError::Invalid(m)) if m.contains("secret")
    ));
    assert!(matches!(
        store.kv_compare_and_swap("token", Some("abc"), "x").await,
        Err(StorageError::Invalid(m)) if m.contains("secret")
    ));
    // A plugin's set keeps it a secret; an API put replaces it with a plain value.
    let kept = store
        .kv_put("token", KvValue::KeepSecrecy("rotated"), None)
        .await
        .unwrap();
    assert!(kept.secret);
    assert_eq!(
        store.datastore_key().unwrap().decrypt(&kept.value).unwrap(),
        "rotated"
    );
    let plain = store
        .kv_put("plain", KvValue::KeepSecrecy("p"), None)
        .await
        .unwrap();
    assert!(!plain.secret && plain.value == "p");
    let replaced = store
        .kv_put("token", KvValue::Plain("public"), None)
        .await
        .unwrap();
    assert!(!replaced.secret && replaced.value == "public");
}

async fn concurrent_increments_and_cas_loops_lose_no_update(backend: &Backend) {
    let store = &backend.store;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.kv_increment("hits", 1).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=200).collect::<Vec<i64>>(),
        "each saw its own value"
    );
    assert_eq!(store.kv_get("hits").await.unwrap().unwrap().value, "200");

    // 50 writers each append their number with a read / compare-and-swap retry loop.
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                loop {
                    let current = store.kv_get("list").await.unwrap().map(|p| p.value);
                    let next = match &current {
                        None => format!("{i}"),
                        Some(list) => format!("{list},{i}"),
                    };
                    if store
                        .kv_compare_and_swap("list", current.as_deref(), &next)
                        .await
                        .unwrap()
                    {
                        return;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let list = store.kv_get("list").await.unwrap().unwrap().value;
    let mut numbers: Vec<u32> = list.split(',').map(|n| n.parse().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..50).collect::<Vec<u32>>());
}
