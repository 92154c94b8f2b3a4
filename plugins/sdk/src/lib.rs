//! Guest SDK for Stormhook plugins.
//!
//! A Stormhook plugin is a WebAssembly component built for `wasm32-wasip2` that targets one
//! of the two worlds of the `stormhook:plugin@0.2.0` WIT package (the repository's `wit/`):
//!
//! * an **action** ([`Action`], exported with [`export_action!`]) does the work a rule or a
//!   caller asks for: JSON parameters in, JSON result out;
//! * a **rule** ([`Rule`], exported with [`export_rule!`]) decides whether a trigger
//!   instance matches, and may hand values to the action-parameter templates.
//!
//! Both can log through [`log`], use the datastore through [`kv`] (with atomic
//! [`kv::increment`] and [`kv::compare_and_swap`]) and read their pack's configuration through
//! [`config`]. Actions can also make HTTP requests through [`http`] (to the hosts their
//! metadata allows) and start more work through [`events`]. Failures the plugin reports on
//! purpose are an [`Error`]; panics, deadlines and memory limits trap and the host reports
//! them itself.
//!
//! # Layout
//!
//! | module | what |
//! | --- | --- |
//! | [`Action`], [`RawAction`], [`Context`] | actions and where a call comes from |
//! | [`Rule`], [`TriggerInstance`], [`Decision`] | rules |
//! | [`Error`] | the WIT `error` variant |
//! | [`log`], [`kv`], [`config`], [`events`] | the host's imports, typed |
//! | [`http`] | a blocking client on `wasi:http/outgoing-handler` (actions only) |
//! | [`bindings`] | the raw generated bindings |
//!
//! # An action
//!
//! ```ignore
//! use serde::{Deserialize, Serialize};
//! use stormhook_sdk::{Action, Context, Error, log};
//!
//! #[derive(Deserialize)]
//! struct Params { name: String }
//!
//! #[derive(Serialize)]
//! struct Output { message: String }
//!
//! struct Greet;
//!
//! impl Action for Greet {
//!     type Params = Params;
//!     type Output = Output;
//!
//!     fn run(params: Params, ctx: &Context) -> Result<Output, Error> {
//!         log::info_with("greeting", &[("execution", &ctx.execution_id)]);
//!         Ok(Output { message: format!("Hello, {}!", params.name) })
//!     }
//! }
//!
//! stormhook_sdk::export_action!(Greet);
//! ```
//!
//! Parameters that do not deserialize into `Params` never reach `run`: the call fails with
//! [`Error::InvalidInput`] carrying serde's message.
//!
//! # A rule
//!
//! ```ignore
//! use stormhook_sdk::{Decision, Error, Rule, TriggerInstance};
//!
//! struct Main;
//!
//! impl Rule for Main {
//!     fn evaluate(instance: &TriggerInstance) -> Result<Decision, Error> {
//!         let payload = instance.payload()?;
//!         Ok(match payload.pointer("/body/ref").and_then(|r| r.as_str()) {
//!             Some("refs/heads/main") => Decision::matched_with(serde_json::json!({"branch": "main"})),
//!             _ => Decision::no_match(),
//!         })
//!     }
//! }
//!
//! stormhook_sdk::export_rule!(Main);
//! ```
//!
//! # Building
//!
//! A plugin crate is a `cdylib` depending on this crate, `serde` and `serde_json`; build it
//! with `cargo build --release --target wasm32-wasip2` and the component is
//! `target/wasm32-wasip2/release/<crate_name>.wasm`. The export macros refuse to compile
//! for other targets, except in `cargo test` builds, so plugin logic can be unit-tested
//! natively (`--target x86_64-unknown-linux-gnu`) as long as the tests do not call the
//! host imports ([`log`], [`kv`], [`config`], [`events`], [`http`]).
//!
//! # Compatibility
//!
//! Components built with this SDK target `stormhook:plugin@0.2.0` and need a host that
//! links it. A component imports only the interfaces it calls, so one that never touches
//! [`http`] does not import `wasi:http` and needs no `allowed_outbound_hosts`.

#![deny(unsafe_code)]

mod action;
#[allow(missing_docs, unreachable_pub, unsafe_code, clippy::all)]
pub mod bindings;
pub mod config;
mod error;
pub mod events;
pub mod http;
pub mod kv;
pub mod log;
pub mod responder;
mod rule;

pub use action::{Action, Context, RawAction};
pub use error::Error;
pub use responder::Responder;
pub use rule::{Decision, Rule, TriggerInstance};

/// `serde` as this SDK uses it, for plugins that want to name it through the SDK.
pub use serde;
/// `serde_json` as this SDK uses it (for `json!`, `Value`, ...).
pub use serde_json;

/// Entry points used by the export macros. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::action::__private::*;
    pub use crate::responder::__private::*;
    pub use crate::rule::__private::*;
}

/// Fails the build of a plugin compiled for anything but wasm, unless it is a test build.
/// Not public API.
///
/// Cargo reads a `.cargo/config.toml` that selects `wasm32-wasip2` (`plugins/`, or a plugin
/// crate of its own) only when it runs inside that folder; with `--manifest-path` from
/// elsewhere it silently builds for the host, and this turns that into a clear error.
#[doc(hidden)]
#[macro_export]
macro_rules! __require_wasm {
    () => {
        #[cfg(all(not(target_arch = "wasm32"), not(test)))]
        ::core::compile_error!(
            "Stormhook plugins are WebAssembly components: build them with \
             `--target wasm32-wasip2` (cargo applies the `.cargo/config.toml` that selects \
             it only when it runs inside that folder)"
        );
    };
}
