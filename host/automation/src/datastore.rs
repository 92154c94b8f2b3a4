//! The plugins' `kv` datastore, backed by the durable store.

use std::sync::Arc;

use stormhook_runtime::datastore::{Datastore, DatastoreError, DatastoreFuture};
use stormhook_storage::Store;

/// [`Datastore`] over the store's `kv` table (StackStorm's `st2kv`, system scope).
pub struct StoreDatastore {
    store: Arc<dyn Store>,
}

impl StoreDatastore {
    /// A datastore over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

fn failed(e: stormhook_storage::StorageError) -> DatastoreError {
    DatastoreError(e.to_string())
}

impl Datastore for StoreDatastore {
    fn get<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, Option<String>> {
        Box::pin(async move { self.store.kv_get(key).await.map_err(failed) })
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a str) -> DatastoreFuture<'a, ()> {
        Box::pin(async move { self.store.kv_set(key, value).await.map_err(failed) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, bool> {
        Box::pin(async move { self.store.kv_delete(key).await.map_err(failed) })
    }
}
