//! The plugins' `kv` datastore, backed by the durable store, and the `decrypt_kv` template
//! filter's decryption.

use std::sync::Arc;
use std::time::Duration;

use stormhook_runtime::datastore::{Datastore, DatastoreError, DatastoreFuture, KvEntry};
use stormhook_storage::{KvValue, StorageError, Store};

/// [`Datastore`] over the store's `kv` table (StackStorm's `st2kv`, system scope). Secrets
/// are decrypted with the store's datastore key; the rules of the trait (a set keeps a secret
/// a secret, increment and compare-and-swap refuse one, both keep the expiry) are the
/// store's, in one transaction each.
pub struct StoreDatastore {
    store: Arc<dyn Store>,
}

impl StoreDatastore {
    /// A datastore over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

fn failed(e: StorageError) -> DatastoreError {
    match e {
        StorageError::Invalid(message) => DatastoreError::Invalid(message),
        other => DatastoreError::Failed(other.to_string()),
    }
}

impl Datastore for StoreDatastore {
    fn get<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, Option<KvEntry>> {
        Box::pin(async move {
            let Some(pair) = self.store.kv_get(key).await.map_err(failed)? else {
                return Ok(None);
            };
            let value = if pair.secret {
                let datastore_key = self.store.datastore_key().map_err(failed)?;
                // The message names the key only; the value stays out of every error.
                datastore_key.decrypt(&pair.value).map_err(|e| {
                    DatastoreError::Failed(format!("the secret `{key}` cannot be decrypted: {e}"))
                })?
            } else {
                pair.value
            };
            Ok(Some(KvEntry {
                value,
                secret: pair.secret,
            }))
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> DatastoreFuture<'a, ()> {
        Box::pin(async move {
            self.store
                .kv_put(key, KvValue::KeepSecrecy(value), ttl)
                .await
                .map(drop)
                .map_err(failed)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, bool> {
        Box::pin(async move { self.store.kv_delete(key).await.map_err(failed) })
    }

    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> DatastoreFuture<'a, i64> {
        Box::pin(async move { self.store.kv_increment(key, delta).await.map_err(failed) })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a str>,
        new: &'a str,
    ) -> DatastoreFuture<'a, bool> {
        Box::pin(async move {
            self.store
                .kv_compare_and_swap(key, expected, new)
                .await
                .map_err(failed)
        })
    }
}

/// What the `decrypt_kv` template filter calls (`stormhook_rules::template::Renderer::
/// with_decrypt_kv`): decrypts a ciphertext, as `st2kv.system.<secret>` renders in a
/// template, with `store`'s datastore key. The error names no value.
pub fn kv_decrypter(
    store: Arc<dyn Store>,
) -> impl Fn(&str) -> Result<String, String> + Send + Sync + 'static {
    move |ciphertext| {
        let key = store.datastore_key().map_err(|e| {
            tracing::error!("decrypt_kv: {e}");
            "the datastore key is not available".to_owned()
        })?;
        key.decrypt(ciphertext).map_err(|e| e.to_string())
    }
}
