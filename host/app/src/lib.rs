//! Stormhook: a StackStorm-compatible webhook automation server that runs rules and actions as
//! sandboxed WebAssembly components.
//!
//! This crate is the binary and its command line. `stormhook serve` resolves its settings and
//! calls the one composition root, `stormhook_server::Stormhook`; the other commands are
//! clients of the API or work on the store offline. The automation domain is
//! `stormhook-automation`; the HTTP server is `stormhook-server`.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap) and one module per subcommand.
//! - [`examples`]: the example packs embedded in the binary.

use std::process::ExitCode;

pub mod cli;
pub mod examples;

/// Installs the tracing subscriber: `RUST_LOG` wins; otherwise `info` for the server and `warn`
/// for one-shot commands, or `debug` with `-v`.
pub fn init_tracing(verbose: bool, server: bool) {
    let default = match (verbose, server) {
        (true, _) => "stormhook=debug,stormhook_runtime=debug,plugin=debug,info",
        (false, true) => "info",
        // The commands that run plugins (`rule test`, `plugin run`) print the plugin's lines
        // and the runtime's errors themselves.
        (false, false) => "warn,plugin=off,stormhook_runtime=off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs one command line.
///
/// # Errors
///
/// Any failure of the command, with context; the binary prints the cause chain.
pub async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    cli::client::DEBUG.store(cli.debug, std::sync::atomic::Ordering::Relaxed);
    match cli.command {
        cli::Command::Serve(args) => cli::serve::run(*args).await,
        cli::Command::Plugin(cmd) => cli::plugin::run(cmd).await,
        cli::Command::Apikey(cmd) => cli::apikey::run(cmd).await,
        cli::Command::Rule(cmd) => cli::rule::run(cmd).await,
        cli::Command::Webhook(cmd) => cli::webhook::run(cmd).await,
        cli::Command::Run(args) => cli::execution::run_action(args).await,
        cli::Command::Execution(cmd) => cli::execution::run(cmd).await,
        cli::Command::TriggerInstance(cmd) => cli::trigger_instance::run(cmd).await,
        cli::Command::Key(cmd) => cli::key::run(cmd).await,
        cli::Command::Auth(args) => cli::auth::run(args).await,
    }
}
