//! `guest_error`: a test fixture action that always fails with an `error`.
//!
//! Parameters `{"kind": "invalid-input" | "denied" | "upstream" | "internal"}` choose the
//! error case (default `invalid-input`); the message is `fixture guest error: <kind>`. An
//! unknown `kind` is itself an `invalid-input` error from the SDK's parameter parsing.

use serde::Deserialize;
use stormhook_sdk::{Action, Context, Error};

/// Which error case to return.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `error::invalid-input`.
    #[default]
    InvalidInput,
    /// `error::denied`.
    Denied,
    /// `error::upstream`.
    Upstream,
    /// `error::internal`.
    Internal,
}

/// The action's parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    /// The error case to return.
    pub kind: Kind,
}

/// The action.
pub struct GuestError;

impl Action for GuestError {
    type Params = Params;
    type Output = ();

    fn run(params: Params, _ctx: &Context) -> Result<(), Error> {
        Err(match params.kind {
            Kind::InvalidInput => Error::invalid_input("fixture guest error: invalid-input"),
            Kind::Denied => Error::denied("fixture guest error: denied"),
            Kind::Upstream => Error::upstream("fixture guest error: upstream"),
            Kind::Internal => Error::internal("fixture guest error: internal"),
        })
    }
}

stormhook_sdk::export_action!(GuestError);
