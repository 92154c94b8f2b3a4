//! Starting more work from an action, through the host's `events` import (StackStorm's
//! `sensor_service.dispatch` and `action_service`).
//!
//! Granted per action in its metadata (`events: true`); without the grant every call fails
//! with [`Error::Denied`]. Each link counts towards a depth limit ([`Context::depth`] is this
//! execution's), so a chain of plugins cannot start work forever: past the limit the host
//! refuses with [`Error::Denied`]. Only actions import `events`; rules cannot start work.
//!
//! ```no_run
//! use stormhook_sdk::{events, Error};
//!
//! fn announce(version: &str) -> Result<String, Error> {
//!     events::emit("mypack.deployed", &serde_json::json!({"version": version}))
//! }
//! ```
//!
//! [`Context::depth`]: crate::Context::depth

use serde::Serialize;

use crate::Error;
use crate::bindings::events as wit;

/// Dispatches a trigger instance of `trigger` (a trigger reference such as
/// `mypack.deployed`) with `payload`, which must serialize to a JSON object. It is stored
/// durably before this returns, and rules evaluate it like any other. Returns the trigger
/// instance id.
///
/// # Errors
///
/// A payload that is not a JSON object is [`Error::InvalidInput`], checked before the host
/// is asked; the host's errors as they are ([`Error::Denied`] without the grant or past the
/// depth limit).
pub fn emit<P: Serialize + ?Sized>(trigger: &str, payload: &P) -> Result<String, Error> {
    Ok(wit::emit(trigger, &object_json("event payload", payload)?)?)
}

/// Requests an execution of `action` (`<pack>.<name>`) with `parameters`, which must
/// serialize to a JSON object. The new execution's context names this one as its parent
/// ([`Context::parent_execution_id`]). It runs later, not inside this call. Returns its id.
///
/// # Errors
///
/// As for [`emit`].
///
/// [`Context::parent_execution_id`]: crate::Context::parent_execution_id
pub fn request_execution<P: Serialize + ?Sized>(
    action: &str,
    parameters: &P,
) -> Result<String, Error> {
    Ok(wit::request_execution(
        action,
        &object_json("execution parameters", parameters)?,
    )?)
}

fn object_json<P: Serialize + ?Sized>(what: &str, value: &P) -> Result<String, Error> {
    let text = serde_json::to_string(value).map_err(|error| {
        Error::invalid_input(format!("{what} must serialize to a JSON object: {error}"))
    })?;
    if !text.starts_with('{') {
        return Err(Error::invalid_input(format!(
            "{what} must serialize to a JSON object"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_pass() {
        assert_eq!(
            object_json("payload", &serde_json::json!({"a": 1})).unwrap(),
            r#"{"a":1}"#
        );
        assert!(matches!(
            object_json("payload", &[1, 2]),
            Err(Error::InvalidInput(_))
        ));
    }
}
