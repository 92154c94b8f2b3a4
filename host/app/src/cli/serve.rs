//! `stormhook serve`: loads the packs, watches them, serves the API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use stormhook_runtime::datastore::MemoryDatastore;
use stormhook_runtime::{Limits, Runtime, RuntimeConfig};

use super::ServeArgs;
use crate::packs::PackManager;
use crate::server::{self, AppState};

/// Runs the server until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// The data directory cannot be created, the runtime cannot start, or the address cannot be bound.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let packs_dir = resolve_packs(&args)?;

    let defaults = RuntimeConfig::default();
    let config = RuntimeConfig {
        max_instances: args.max_instances,
        max_limits: Limits {
            timeout: Duration::from_secs(args.max_timeout_secs),
            memory_bytes: args.max_memory_mb.saturating_mul(1 << 20),
        },
        cache_dir: Some(data_dir.join("cache")),
        ..defaults
    };
    // The durable datastore arrives with the storage layer; until then keys live in memory.
    let runtime = Arc::new(
        Runtime::new(config, Arc::new(MemoryDatastore::default()))
            .context("starting the WebAssembly runtime")?,
    );
    let packs = Arc::new(PackManager::new(packs_dir.clone(), Arc::clone(&runtime)));
    let report = packs.reload().await;
    tracing::info!(
        packs = %packs_dir.display(),
        loaded = report.loaded.len() + report.unchanged.len(),
        refused = report.errors.len(),
        "packs loaded"
    );
    let _watcher = if args.no_watch {
        None
    } else {
        Some(
            packs
                .watch()
                .with_context(|| format!("watching {}", packs_dir.display()))?,
        )
    };

    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    eprintln!(
        "stormhook listening on http://{addr} (packs: {}, data: {})",
        packs_dir.display(),
        data_dir.display()
    );
    eprintln!("  loaded plugins: curl http://{addr}/api/v1/plugins");
    server::serve(listener, AppState { packs }, shutdown_signal())
        .await
        .context("serving HTTP")?;
    eprintln!("stormhook stopped");
    Ok(ExitCode::SUCCESS)
}

/// `--packs`, or `<data-dir>/packs` filled with the example packs the first time.
fn resolve_packs(args: &ServeArgs) -> anyhow::Result<PathBuf> {
    if let Some(packs) = &args.packs {
        std::fs::create_dir_all(packs)
            .with_context(|| format!("creating the packs folder {}", packs.display()))?;
        return Ok(packs.clone());
    }
    let packs = args.data_dir.join("packs");
    if !packs.exists() {
        std::fs::create_dir_all(&packs).with_context(|| format!("creating {}", packs.display()))?;
        let written = crate::examples::install(&packs)
            .with_context(|| format!("installing the example packs into {}", packs.display()))?;
        if written > 0 {
            eprintln!("installed the example packs into {}", packs.display());
        }
    }
    Ok(packs)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
