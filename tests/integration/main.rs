//! Stormhook's integration suite: one test binary, one module per area.

mod examples;
mod reload;
mod sandbox;
mod server;
