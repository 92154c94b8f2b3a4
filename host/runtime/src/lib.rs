//! The Stormhook plugin runtime: the only crate that knows about wasmtime.
//!
//! Rules and actions are WebAssembly components built against the `stormhook:plugin` WIT package
//! (`wit/` at the repository root). This crate compiles them (off the request path, with an on-disk
//! cache of precompiled code), keeps the current version of each plugin in a registry that can be
//! swapped atomically while calls are in flight, and runs every call in a fresh sandbox with a
//! deadline, a memory cap, bounded output capture and no filesystem or network.
//!
//! # Layout
//!
//! - [`config`]: limits and pool sizes ([`RuntimeConfig`], [`Limits`]).
//! - `engine`: the one wasmtime `Engine` (pooling allocator, copy-on-write images, epoch ticker).
//! - `bindings`: the host side of the WIT contract (the `bindgen!` invocations).
//! - `host`: the per-call store state and the host imports (`log`, `kv`, captured stdio).
//! - [`datastore`]: the key-value datastore trait plugins reach through the `kv` import.
//! - [`services`]: pack configuration (`config`) and starting more work (`events`), and the
//!   [`services::Redactor`] that masks secrets in what a call records.
//! - `registry`: loading, caching, hot-swapping and listing plugins.
//! - `inspect`: what a component declares, checked against the load limits before compiling.
//! - `cache`: eviction of the compile cache.
//! - `fair`: the background guest pool that long calls move to, at a lower OS priority.
//! - `call`: one sandboxed call of a rule or an action.
//! - `types`: the public value types (a leaf: no other module of the crate below it).
//! - [`error`]: typed errors ([`LoadError`], [`PluginError`]).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use stormhook_runtime::{PluginKind, PluginSpec, Runtime, RuntimeConfig, datastore::MemoryDatastore};
//!
//! let runtime = Arc::new(Runtime::new(RuntimeConfig::default(), Arc::new(MemoryDatastore::default()))?);
//! runtime.load(PluginSpec::new("examples.greet", PluginKind::Action, "greet.wasm")).await?;
//! let report = runtime
//!     .run_action("examples.greet", r#"{"name":"Ada"}"#, Default::default())
//!     .await;
//! println!("{:?}", report.result);
//! # Ok(()) }
//! ```

mod bindings;
mod cache;
mod call;
pub mod config;
pub mod datastore;
mod engine;
pub mod error;
mod fair;
mod host;
mod inspect;
pub mod outbound;
mod registry;
pub mod services;
mod types;

pub use call::CallReport;
pub use config::{Fairness, KvGrant, Limits, LoadLimits, RuntimeConfig};
pub use error::{GuestError, GuestErrorKind, LoadError, PluginError};
pub use registry::Runtime;
pub use types::{
    ActionContext, Captured, HookRequest, HookResponse, LoadOutcome, LogLevel, LogRecord,
    PluginInfo, PluginKind, PluginSpec, PluginState, PluginVersion, RuleDecision, TriggerInstance,
};
