//! Stormhook's integration suite: one test binary, one module per area.

mod auth;
mod cli;
mod datastore;
mod disk_full;
mod engine;
mod examples;
mod executions;
mod js_fetch;
mod layers;
mod limits;
mod loading;
mod outbound;
mod pack_config;
mod plugin_api;
mod reload;
mod rules;
mod sandbox;
mod senders;
mod server;
mod st2_cli;
mod tls;
mod traces;
mod triggers;
mod views;
mod webhooks;
