//! The key-value datastore that plugins reach through the `kv` import (StackStorm's `st2kv`,
//! system scope).
//!
//! The server provides the durable implementation; [`MemoryDatastore`] serves tests and tools.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// A boxed future returned by [`Datastore`] methods.
pub type DatastoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, DatastoreError>> + Send + 'a>>;

/// A failure of the datastore itself (not a denied key: grants are checked before).
#[derive(Debug, thiserror::Error)]
#[error("datastore: {0}")]
pub struct DatastoreError(pub String);

/// The system-scope key-value datastore.
pub trait Datastore: Send + Sync + 'static {
    /// Returns the value under `key`.
    fn get<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, Option<String>>;
    /// Stores `value` under `key`.
    fn set<'a>(&'a self, key: &'a str, value: &'a str) -> DatastoreFuture<'a, ()>;
    /// Deletes `key`; returns whether it existed.
    fn delete<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, bool>;
}

/// A datastore held in memory; nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryDatastore {
    entries: Mutex<BTreeMap<String, String>>,
}

impl MemoryDatastore {
    /// A datastore holding `values` (for example a copy of the real one, for a dry run).
    pub fn with_values(values: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            entries: Mutex::new(values.into_iter().collect()),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> T,
    ) -> Result<T, DatastoreError> {
        let mut map = self
            .entries
            .lock()
            .map_err(|_| DatastoreError("lock poisoned".into()))?;
        Ok(f(&mut map))
    }
}

impl Datastore for MemoryDatastore {
    fn get<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, Option<String>> {
        Box::pin(async move { self.with(|m| m.get(key).cloned()) })
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a str) -> DatastoreFuture<'a, ()> {
        Box::pin(async move {
            self.with(|m| {
                m.insert(key.to_owned(), value.to_owned());
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, bool> {
        Box::pin(async move { self.with(|m| m.remove(key).is_some()) })
    }
}
