//! The pack's configuration, StackStorm's way, through the host's `config` import.
//!
//! The operator writes the values in `<data-dir>/configs/<pack>.yaml`; the host validates them
//! against the pack's `config.schema.yaml` and fills in the schema's defaults before a plugin
//! sees them. Values marked `secret: true` are readable here (a plugin is trusted with its own
//! pack's config); the host masks them in everything it records of the call, so do not put
//! them in results, log lines or error messages yourself.
//!
//! Both rules and actions can read the config.
//!
//! ```no_run
//! use stormhook_sdk::{config, Error};
//!
//! fn webhook_url() -> Result<String, Error> {
//!     config::get::<String>("webhook_url")?
//!         .ok_or_else(|| Error::invalid_input("the pack config has no `webhook_url`"))
//! }
//! ```

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::Error;
use crate::bindings::config as wit;

/// The value of the top-level config key `key` deserialized into `T`, or `None` when it is
/// not set.
///
/// # Errors
///
/// A value that does not fit `T` is [`Error::InvalidInput`] (the operator's config is the
/// input); the host's own errors as they are.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match wit::get(key)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|error| {
            Error::invalid_input(format!("pack config key `{key}` does not fit: {error}"))
        }),
    }
}

/// The whole config as a JSON object (empty when the pack has none).
///
/// # Errors
///
/// The host's errors as they are; text from the host that is not a JSON object is
/// [`Error::Internal`].
pub fn get_all() -> Result<Map<String, Value>, Error> {
    let text = wit::get_all()?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::internal(
            "the host's pack config is not a JSON object",
        )),
        Err(error) => Err(Error::internal(format!(
            "the host's pack config is not JSON: {error}"
        ))),
    }
}

/// The whole config deserialized into `T` (a struct with one field per key you need).
///
/// # Errors
///
/// A config that does not fit `T` is [`Error::InvalidInput`]; the host's errors as they are.
pub fn get_all_as<T: DeserializeOwned>() -> Result<T, Error> {
    let text = wit::get_all()?;
    serde_json::from_str(&text)
        .map_err(|error| Error::invalid_input(format!("the pack config does not fit: {error}")))
}
