//! The key-value datastore that plugins reach through the `kv` import (StackStorm's `st2kv`,
//! system scope).
//!
//! The server provides the durable implementation; [`MemoryDatastore`] serves tests and tools.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A boxed future returned by [`Datastore`] methods.
pub type DatastoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, DatastoreError>> + Send + 'a>>;

/// Why a datastore operation failed (grants are checked before, by the host).
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// The request cannot be done with this value (for example an increment of a value that
    /// is not an integer). Plugins see `invalid-input`.
    #[error("{0}")]
    Invalid(String),
    /// The datastore itself failed. Plugins see `upstream`.
    #[error("datastore: {0}")]
    Failed(String),
}

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The value, decrypted when it is a secret.
    pub value: String,
    /// Whether it is stored as a secret (encrypted at rest).
    pub secret: bool,
}

/// The system-scope key-value datastore. Expired keys are invisible to every method.
pub trait Datastore: Send + Sync + 'static {
    /// Returns the entry under `key`.
    fn get<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, Option<KvEntry>>;
    /// Stores `value` under `key` (not secret), expiring after `ttl` when given.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> DatastoreFuture<'a, ()>;
    /// Deletes `key`; returns whether it existed.
    fn delete<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, bool>;
    /// Atomically adds `delta` to the decimal integer under `key` (a missing key counts as 0)
    /// and returns the new value. A value that is not an integer, or an overflow, is
    /// [`DatastoreError::Invalid`].
    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> DatastoreFuture<'a, i64>;
    /// Atomically stores `new` under `key` only if the current value is `expected` (`None`:
    /// the key must not exist); returns whether it stored.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a str>,
        new: &'a str,
    ) -> DatastoreFuture<'a, bool>;
}

/// A datastore held in memory; nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryDatastore {
    entries: Mutex<BTreeMap<String, Stored>>,
}

#[derive(Debug, Clone)]
struct Stored {
    entry: KvEntry,
    expires: Option<Instant>,
}

impl MemoryDatastore {
    /// A datastore holding `values` (for example a copy of the real one, for a dry run).
    pub fn with_values(values: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            entries: Mutex::new(
                values
                    .into_iter()
                    .map(|(k, value)| {
                        let entry = KvEntry {
                            value,
                            secret: false,
                        };
                        (k, Stored { entry, expires: None })
                    })
                    .collect(),
            ),
        }
    }

    /// Stores a secret (as `st2 key set --encrypt` would), for tests and dry runs.
    pub fn set_secret(&self, key: &str, value: &str) {
        if let Ok(mut map) = self.entries.lock() {
            let entry = KvEntry {
                value: value.to_owned(),
                secret: true,
            };
            map.insert(key.to_owned(), Stored { entry, expires: None });
        }
    }

    /// Runs `f` on the live entries (expired ones removed first), under the lock.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Stored>) -> Result<T, DatastoreError>,
    ) -> Result<T, DatastoreError> {
        let mut map = self
            .entries
            .lock()
            .map_err(|_| DatastoreError::Failed("lock poisoned".into()))?;
        let now = Instant::now();
        map.retain(|_, s| s.expires.is_none_or(|at| at > now));
        f(&mut map)
    }
}

fn plain(value: String, expires: Option<Instant>) -> Stored {
    Stored {
        entry: KvEntry {
            value,
            secret: false,
        },
        expires,
    }
}

impl Datastore for MemoryDatastore {
    fn get<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, Option<KvEntry>> {
        Box::pin(async move { self.with(|m| Ok(m.get(key).map(|s| s.entry.clone()))) })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> DatastoreFuture<'a, ()> {
        Box::pin(async move {
            let expires = ttl.map(|ttl| Instant::now() + ttl);
            self.with(|m| {
                m.insert(key.to_owned(), plain(value.to_owned(), expires));
                Ok(())
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, bool> {
        Box::pin(async move { self.with(|m| Ok(m.remove(key).is_some())) })
    }

    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> DatastoreFuture<'a, i64> {
        Box::pin(async move {
            self.with(|m| {
                let (current, expires) = match m.get(key) {
                    None => (0, None),
                    Some(s) => (parse_counter(key, &s.entry.value)?, s.expires),
                };
                let next = current.checked_add(delta).ok_or_else(|| {
                    DatastoreError::Invalid(format!("`{key}`: {current} + {delta} overflows"))
                })?;
                m.insert(key.to_owned(), plain(next.to_string(), expires));
                Ok(next)
            })
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a str>,
        new: &'a str,
    ) -> DatastoreFuture<'a, bool> {
        Box::pin(async move {
            self.with(|m| {
                if m.get(key).map(|s| s.entry.value.as_str()) != expected {
                    return Ok(false);
                }
                m.insert(key.to_owned(), plain(new.to_owned(), None));
                Ok(true)
            })
        })
    }
}

/// The integer stored under `key`, or why it is not one.
pub fn parse_counter(key: &str, value: &str) -> Result<i64, DatastoreError> {
    value.trim().parse::<i64>().map_err(|_| {
        DatastoreError::Invalid(format!(
            "`{key}` holds {value:?}, not a decimal integer, so it cannot be incremented"
        ))
    })
}
