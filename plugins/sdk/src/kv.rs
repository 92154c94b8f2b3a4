//! The key-value datastore (StackStorm's `st2kv`, system scope) through the host's `kv`
//! import.
//!
//! A plugin sees only what its pack metadata grants (reads, writes, a key prefix); anything
//! else fails with [`Error::Denied`]. Datastore failures arrive as [`Error::Upstream`] (or
//! whatever the host reports); pass them on with `?`.
//!
//! A `get` followed by a `set` loses updates when calls run concurrently. Use the atomic
//! operations instead: [`increment`] for counters, [`compare_and_swap`] (in a retry loop) for
//! anything else, as [`update_json`] does.
//!
//! ```no_run
//! use stormhook_sdk::{kv, Error};
//!
//! fn bump(key: &str) -> Result<i64, Error> {
//!     kv::increment(key, 1)
//! }
//!
//! fn remember(key: &str, item: &str) -> Result<Vec<String>, Error> {
//!     kv::update_json(key, |list: Option<Vec<String>>| {
//!         let mut list = list.unwrap_or_default();
//!         list.push(item.to_owned());
//!         Ok(list)
//!     })
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
        Some(text) => parse_stored(key, &text).map(Some),
    }
}

/// Stores `value` as JSON text under `key` (StackStorm stores JSON values as JSON text).
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    set(key, &to_json(value)?)
}

/// Stores `value` under `key`, expiring `ttl_seconds` from now (StackStorm's `ttl`).
pub fn set_with_ttl(key: &str, value: &str, ttl_seconds: u32) -> Result<(), Error> {
    Ok(wit::set_with_ttl(key, value, ttl_seconds)?)
}

/// Adds `delta` to the integer stored under `key` (a missing key counts as 0) and returns the
/// new value, atomically: concurrent increments never lose an update.
///
/// # Errors
///
/// A stored value that is not a decimal integer is [`Error::InvalidInput`] (from the host), as
/// is an overflow; grants and datastore failures as for [`set`].
pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
    Ok(wit::increment(key, delta)?)
}

/// Stores `new` under `key` only if the current value is `expected` (`None`: the key must not
/// exist), atomically. Returns whether it stored; `false` means another call changed the value
/// first: read it again and retry.
pub fn compare_and_swap(key: &str, expected: Option<&str>, new: &str) -> Result<bool, Error> {
    Ok(wit::compare_and_swap(key, expected, new)?)
}

/// How many times [`update_json`] reads and tries again before it gives up.
pub const UPDATE_ATTEMPTS: u32 = 100;

/// Replaces the JSON value under `key` with `update(current)` atomically: a read, then a
/// [`compare_and_swap`] from exactly what was read, again while another call wins the race.
/// `update` gets `None` when the key is absent and may run more than once. Returns the value
/// stored.
///
/// # Errors
///
/// [`Error::Upstream`] after [`UPDATE_ATTEMPTS`] lost races; a stored value that does not
/// parse as `T` is [`Error::Internal`]; errors from `update` and from the datastore as they are.
pub fn update_json<T, F>(key: &str, mut update: F) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> Result<T, Error>,
{
    for _ in 0..UPDATE_ATTEMPTS {
        let current = get(key)?;
        let parsed = match &current {
            None => None,
            Some(text) => Some(parse_stored(key, text)?),
        };
        let next = update(parsed)?;
        let text = to_json(&next)?;
        if compare_and_swap(key, current.as_deref(), &text)? {
            return Ok(next);
        }
    }
    Err(Error::upstream(format!(
        "datastore key `{key}` kept changing: gave up after {UPDATE_ATTEMPTS} attempts"
    )))
}

fn parse_stored<T: DeserializeOwned>(key: &str, text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|error| {
        Error::internal(format!(
            "datastore value under `{key}` does not fit: {error}"
        ))
    })
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value)
        .map_err(|error| Error::internal(format!("value does not serialize: {error}")))
}
