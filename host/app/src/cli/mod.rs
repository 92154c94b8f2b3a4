//! The command line: `stormhook <command>`. One module per subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod plugin;
pub mod serve;

/// Stormhook: StackStorm-compatible webhooks, with rules and actions as WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "stormhook", version, about, propagate_version = true)]
pub struct Cli {
    /// Log more (debug level); `RUST_LOG` overrides.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Inspect and reload plugins on a running server.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `stormhook serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (StackStorm's API port by default).
    #[arg(long, env = "STORMHOOK_BIND", default_value = "127.0.0.1:9101")]
    pub bind: String,
    /// Where Stormhook keeps its state (the store, the compile cache, and by default the packs).
    #[arg(long, env = "STORMHOOK_DATA_DIR", default_value = "stormhook-data")]
    pub data_dir: PathBuf,
    /// The packs folder. Default: `<data-dir>/packs`, filled with the example packs on first start.
    #[arg(long, env = "STORMHOOK_PACKS")]
    pub packs: Option<PathBuf>,
    /// Most plugin instances alive at once; calls past it fail as busy.
    #[arg(long, env = "STORMHOOK_MAX_INSTANCES", default_value_t = 256)]
    pub max_instances: u32,
    /// Ceiling for any action's deadline, in seconds.
    #[arg(long, env = "STORMHOOK_MAX_TIMEOUT_SECS", default_value_t = 600)]
    pub max_timeout_secs: u64,
    /// Ceiling for any plugin's memory cap, in MiB.
    #[arg(long, env = "STORMHOOK_MAX_MEMORY_MB", default_value_t = 1024)]
    pub max_memory_mb: u64,
    /// Do not watch the packs folder for changes (reload with `stormhook plugin reload`).
    #[arg(long, env = "STORMHOOK_NO_WATCH")]
    pub no_watch: bool,
}

/// `stormhook plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List loaded plugins: ref, kind, version, loaded-at, last error.
    List(ClientArgs),
    /// Rescan the packs folder now.
    Reload(ClientArgs),
}

/// How a client command reaches the server.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server's base URL.
    #[arg(long, env = "STORMHOOK_URL", default_value = "http://127.0.0.1:9101")]
    pub url: String,
    /// Print JSON instead of a table.
    #[arg(short = 'j', long)]
    pub json: bool,
}
