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
///
/// Secrets: [`Datastore::get`] returns a secret decrypted, marked `secret: true` (the host
/// decides whether the plugin may see it); [`Datastore::set`] on a key that holds a secret
/// stores the new value encrypted, so it stays a secret (a plugin cannot turn a secret into
/// plain text); [`Datastore::increment`] and [`Datastore::compare_and_swap`] refuse a secret
/// with [`DatastoreError::Invalid`] (a compare would tell a plugin without the secrets grant
/// whether it guessed the value).
pub trait Datastore: Send + Sync + 'static {
    /// Returns the entry under `key`.
    fn get<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, Option<KvEntry>>;
    /// Stores `value` under `key`, expiring after `ttl` when given (and never otherwise: a set
    /// without a TTL removes the key's expiry). A secret stays a secret.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Option<Duration>,
    ) -> DatastoreFuture<'a, ()>;
    /// Deletes `key`; returns whether it existed.
    fn delete<'a>(&'a self, key: &'a str) -> DatastoreFuture<'a, bool>;
    /// Atomically adds `delta` to the decimal integer under `key` (a missing key counts as 0)
    /// and returns the new value. The key keeps its expiry, so a counter set with a TTL counts
    /// within a fixed window. A value that is not an integer, an overflow, or a secret is
    /// [`DatastoreError::Invalid`].
    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> DatastoreFuture<'a, i64>;
    /// Atomically stores `new` under `key` only if the current value is `expected` (`None`:
    /// the key must not exist); returns whether it stored. A replaced key keeps its expiry; a
    /// new one has none. A secret is [`DatastoreError::Invalid`].
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a str>,
        new: &'a str,
    ) -> DatastoreFuture<'a, bool>;
}

/// A datastore held in memory; nothing survives the process. It keeps secrets as plain text
/// (it is for tests, dry runs and `stormhook plugin run`), with the same rules as the store.
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
        let entries = values
            .into_iter()
            .map(|(key, value)| (key, stored(value, false, None)))
            .collect();
        Self {
            entries: Mutex::new(entries),
        }
    }

    /// Stores a secret (as `st2 key set --encrypt` would), for tests and dry runs.
    pub fn set_secret(&self, key: &str, value: &str) {
        if let Ok(mut map) = self.entries.lock() {
            map.insert(key.to_owned(), stored(value.to_owned(), true, None));
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

fn stored(value: String, secret: bool, expires: Option<Instant>) -> Stored {
    Stored {
        entry: KvEntry { value, secret },
        expires,
    }
}

/// The current plain entry under `key` for an atomic operation named `what`; a secret is
/// refused.
fn plain_entry<'m>(
    map: &'m BTreeMap<String, Stored>,
    key: &str,
    what: &str,
) -> Result<Option<&'m Stored>, DatastoreError> {
    match map.get(key) {
        Some(s) if s.entry.secret => Err(DatastoreError::Invalid(format!(
            "`{key}` is a secret; {what} works on plain values only"
        ))),
        other => Ok(other),
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
            let expires = ttl.and_then(|ttl| Instant::now().checked_add(ttl));
            self.with(|m| {
                let secret = m.get(key).is_some_and(|s| s.entry.secret);
                m.insert(key.to_owned(), stored(value.to_owned(), secret, expires));
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
                let (current, expires) = match plain_entry(m, key, "increment")? {
                    None => (0, None),
                    Some(s) => (parse_counter(key, &s.entry.value)?, s.expires),
                };
                let next = current.checked_add(delta).ok_or_else(|| {
                    DatastoreError::Invalid(format!("`{key}`: {current} + {delta} overflows"))
                })?;
                m.insert(key.to_owned(), stored(next.to_string(), false, expires));
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
                let current = plain_entry(m, key, "compare-and-swap")?;
                if current.map(|s| s.entry.value.as_str()) != expected {
                    return Ok(false);
                }
                let expires = current.and_then(|s| s.expires);
                m.insert(key.to_owned(), stored(new.to_owned(), false, expires));
                Ok(true)
            })
        })
    }
}

/// The integer stored under `key`, or why it is not one. The value is not repeated: a plugin
/// may be allowed to write a key it may not read.
pub fn parse_counter(key: &str, value: &str) -> Result<i64, DatastoreError> {
    value.trim().parse::<i64>().map_err(|_| {
        DatastoreError::Invalid(format!(
            "`{key}` does not hold a decimal integer, so it cannot be incremented"
        ))
    })
}
