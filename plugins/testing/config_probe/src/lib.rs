//! `config_probe`: a test fixture action that reads its pack's config.
//!
//! Parameters `{"key": "name"}` (`key` optional) return `{"all": <config::get_all()>,
//! "value": <config::get(key)> or null}`. Host errors are returned unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stormhook_sdk::{Action, Context, Error, config};

/// The parameters.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// One top-level config key to read.
    pub key: Option<String>,
}

/// The result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The whole config.
    pub all: Map<String, Value>,
    /// The value of `key` (`null` when unset or no key was given).
    pub value: Option<Value>,
}

/// The action.
pub struct ConfigProbe;

impl Action for ConfigProbe {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, _ctx: &Context) -> Result<Output, Error> {
        let all = config::get_all()?;
        let value = match &params.key {
            Some(key) => config::get::<Value>(key)?,
            None => None,
        };
        Ok(Output { all, value })
    }
}

stormhook_sdk::export_action!(ConfigProbe);
