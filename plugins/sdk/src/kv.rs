//! The key-value datastore (StackStorm's `st2kv`, system scope) through the host's `kv`
//! import.
//!
//! A plugin sees only what its pack metadata grants (reads, writes, a key prefix); anything
//! else fails with [`Error::Denied`]. Datastore failures arrive as [`Error::Upstream`] (or
//! whatever the host reports); pass them on with `?`.
//!
//! ```no_run
//! use stormhook_sdk::{kv, Error};
//!
//! fn bump(key: &str) -> Result<u64, Error> {
//!     let current: u64 = kv::get_json(key)?.unwrap_or(0);
//!     kv::set_json(key, &(current + 1))?;
//!     Ok(current + 1)
//! }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::kv as wit;

/// Returns the value stored under `key`, or `None`.
pub fn get(key: &str) -> Result<Option<String>, Error> {
    Ok(wit::get(key)?)
}

/// Stores `value` under `key`, replacing any previous value.
pub fn set(key: &str, value: &str) -> Result<(), Error> {
    Ok(wit::set(key, value)?)
}

/// Deletes `key`; returns whether it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    Ok(wit::delete(key)?)
}

/// Returns the value under `key` parsed as JSON into `T`, or `None` when the key is absent.
///
/// A stored value that does not parse as `T` is [`Error::Internal`]: it is not the caller's
/// input but the datastore's content.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|error| {
            Error::internal(format!(
                "datastore value under `{key}` does not fit: {error}"
            ))
        }),
    }
}

/// Stores `value` as JSON text under `key` (StackStorm stores JSON values as JSON text).
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    let text = serde_json::to_string(value)
        .map_err(|error| Error::internal(format!("value does not serialize: {error}")))?;
    set(key, &text)
}
