//! Stormhook's automation domain: what happens to an event after it is stored.
//!
//! The rules engine reads stored trigger instances and evaluates them against the rule set; the
//! executor runs the actions rules and API callers ask for, through one dispatch over the
//! runners; packs are loaded, watched and hot-reloaded into the plugin runtime. Nothing here
//! knows HTTP: `stormhook-server` translates requests into calls on [`Automation`].
//!
//! # Layout
//!
//! - [`Automation`] ([`app`]): the one composition root. It owns every part and every background
//!   task; [`Automation::shutdown`] stops and joins them.
//! - [`engine`]: the rules engine (trigger instance -> rule matches -> enforcements).
//! - [`executions`]: the executor (request, status machine, scheduling, running, recording).
//! - [`actions`]: the catalog of actions and the runners (`builtin`, `local`, `http`, `wasm`).
//! - [`packs`]: pack folders, the rule set, loading and watching.
//! - [`config`]: pack configs (schema and values files), and `config_context`.
//! - [`triggers`]: triggers, webhooks and the system trigger types.
//! - [`documents`]: the StackStorm document shapes (a rule, a trigger type).
//! - [`schema`]: JSON-schema validation with Python's messages.
//! - [`datastore`]: the plugins' key-value datastore on the store.
//! - `cluster`: leases, orphaned executions and changes from other nodes, when several nodes
//!   share the store (PostgreSQL).
//! - [`retention`]: purging finished records past their time-to-live.
//! - [`status`]: execution, trigger-instance and enforcement statuses.

pub mod actions;
pub mod app;
mod cluster;
pub mod config;
pub mod datastore;
pub mod documents;
pub mod engine;
pub mod events;
pub mod executions;
pub mod packs;
pub mod retention;
mod retry;
pub mod schema;
pub mod status;
mod stop;
pub mod triggers;

pub use app::{Automation, Settings};
