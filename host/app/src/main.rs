//! The `stormhook` binary: parses the command line, runs it, prints the cause chain of a failure.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc malloc: under webhook load, glibc's arena locks and frees took
/// about a sixth of the CPU (see BENCHMARKS.md, ingest).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = stormhook::cli::Cli::parse();
    let server = matches!(cli.command, stormhook::cli::Command::Serve(_));
    stormhook::init_tracing(cli.verbose, server);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(stormhook::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
