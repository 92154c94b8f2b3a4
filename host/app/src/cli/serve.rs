//! `stormhook serve`: opens the store, loads the packs, watches them, serves the API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use stormhook_automation::actions::http::HttpPolicy;
use stormhook_automation::app::INGEST_QUEUE;
use stormhook_runtime::outbound::OutboundLimits;
use stormhook_runtime::{Fairness, Limits, LoadLimits, RuntimeConfig};
use stormhook_server::{Config, ConnectionLimits, Serving, Settings, Stormhook};
use stormhook_storage::Store;

use stormhook_automation::retention::Retention;
use stormhook_storage::Retained;

use super::{ServeArgs, open_node_store};

/// Runs the server until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// The data directory or the store cannot be opened, the runtime cannot start, the TLS files are
/// unusable, or the address cannot be bound.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.store.data_dir.clone();
    // Held until the process ends (the operating system releases it on a crash too).
    let _lock = lock_data_dir(&data_dir)?;
    let node = args.node_id.clone().unwrap_or_else(super::default_node_id);
    let store: Arc<dyn Store> = open_node_store(
        &args.store,
        Some((node, Duration::from_secs(args.lease_secs))),
    )
    .await?;
    let retention = [
        (Retained::TriggerInstances, args.trigger_instances_ttl),
        (Retained::Traces, args.traces_ttl),
        (Retained::Enforcements, args.enforcements_ttl),
        (Retained::Executions, args.executions_ttl),
    ]
    .into_iter()
    .fold(Retention::keep_forever(), |r, (what, ttl)| {
        r.with(what, ttl)
    });
    let retention = Retention {
        interval: Duration::from_secs(args.purge_interval_secs),
        ..retention
    };
    let packs_dir = resolve_packs(&args)?;
    let configs_dir = args
        .configs
        .clone()
        .unwrap_or_else(|| data_dir.join("configs"));
    std::fs::create_dir_all(&configs_dir)
        .with_context(|| format!("creating the configs folder {}", configs_dir.display()))?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(stormhook_server::listener::tls_config(cert, key)?),
        _ => None,
    };
    let http_policy = HttpPolicy::new(&args.http_deny, &args.http_allow)
        .map_err(|e| anyhow::anyhow!("--http-deny/--http-allow: {e}"))?;
    if args.htpasswd.is_none() {
        tracing::info!(
            "no --htpasswd: POST /auth/v1/tokens refuses every user (API keys work); give an htpasswd file to issue tokens"
        );
    }
    let app = Stormhook::start(Config {
        automation: stormhook_automation::Settings {
            store: Arc::clone(&store),
            packs_dir: packs_dir.clone(),
            configs_dir: Some(configs_dir),
            runtime: RuntimeConfig {
                max_instances: args.max_instances,
                max_limits: Limits {
                    timeout: Duration::from_secs(args.max_timeout_secs),
                    memory_bytes: args.max_memory_mb.saturating_mul(1 << 20),
                },
                cache_dir: Some(data_dir.join("cache")),
                fairness: Fairness {
                    foreground_slice: Duration::from_millis(args.foreground_slice_ms),
                    background_threads: args
                        .guest_threads
                        .unwrap_or(Fairness::default().background_threads),
                    background_nice: args.guest_nice,
                    background_idle: args.guest_idle,
                },
                load: LoadLimits {
                    max_file_bytes: args.max_component_mb.saturating_mul(1 << 20),
                    max_functions: args.max_component_functions,
                    compile_timeout: Duration::from_secs(args.compile_timeout_secs),
                    parallel_compiles: args.parallel_compiles.max(1),
                    cache_max_bytes: args.cache_max_mb.saturating_mul(1 << 20),
                    loading_wait: Duration::from_secs(args.loading_wait_secs),
                    ..LoadLimits::default()
                },
                outbound: OutboundLimits {
                    max_requests: args.outbound_max_requests,
                    max_response_bytes: args.outbound_max_response_mb.saturating_mul(1 << 20),
                    request_timeout: Duration::from_secs(args.outbound_timeout_secs),
                    ..OutboundLimits::default()
                },
                ca_bundle: args.outbound_ca_bundle.clone(),
                max_chain_depth: args.max_chain_depth,
                ..RuntimeConfig::default()
            },
            http_policy,
            core_local: !args.disable_core_local,
            watch: !args.no_watch,
            ingest_queue: INGEST_QUEUE,
            retention,
        },
        htpasswd: args.htpasswd.clone(),
        token_ttl: Duration::from_secs(args.token_ttl_secs),
    })
    .await?;
    tracing::info!(
        packs = %packs_dir.display(),
        webhooks = app.automation.packs.rules().webhooks.all().count(),
        loading = app.automation.packs.runtime().loading(),
        "packs read; components load in the background"
    );

    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{addr}");
    let api_url = args.api_url.clone().unwrap_or_else(|| base.clone());
    let settings = Settings {
        max_body_bytes: args.max_body_bytes,
        max_concurrent_requests: args.max_concurrent_requests,
        webui_url: args
            .webui_url
            .clone()
            .unwrap_or_else(|| origin_of(&api_url)),
        api_url,
        allow_origins: args.allow_origin.clone(),
        max_requests_per_client: args.max_requests_per_client,
        body_timeout: Duration::from_secs(args.body_timeout_secs),
        body_min_rate: args.body_min_bytes_per_sec,
    };
    let first_key = super::apikey::first_key(Arc::clone(&store))
        .await
        .context("creating the first API key")?;
    let limits = ConnectionLimits {
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        max_connections: args.max_connections,
        ..ConnectionLimits::default()
    };
    let has_tls = tls.is_some();

    eprintln!(
        "stormhook listening on {base} (packs: {}, data: {}, store: {})",
        packs_dir.display(),
        data_dir.display(),
        match (args.store.database_url.as_deref(), store.cluster()) {
            (Some(url), Some(cluster)) => format!(
                "PostgreSQL {} as node {}",
                super::redact_url(url),
                cluster.node_id
            ),
            _ => "SQLite".into(),
        }
    );
    if let Some(key) = first_key {
        print_first_key(&key, &base, has_tls);
    }
    let serving = Serving {
        settings,
        limits,
        tls,
    };
    app.serve(listener, serving, shutdown_signal())
        .await
        .context("serving HTTP")?;
    eprintln!("stormhook stopped");
    Ok(ExitCode::SUCCESS)
}

/// Prints the first API key once, with a curl line for the example webhook. Goes to the terminal
/// (stdout), never to the log.
fn print_first_key(key: &str, base: &str, tls: bool) {
    let insecure = if tls { "-k " } else { "" };
    println!();
    println!("Created the first API key. It is shown only now (Stormhook keeps only its hash):");
    println!();
    println!("    {key}");
    println!();
    println!("Try the example webhook (pack `demo`, rule `push_to_main`):");
    println!();
    println!(
        "    curl {insecure}-X POST {base}/api/v1/webhooks/github -H \"St2-Api-Key: {key}\" -H \"Content-Type: application/json\" -H \"X-GitHub-Event: push\" --data '{{\"ref\": \"refs/heads/main\", \"pusher\": {{\"name\": \"ada\"}}}}'"
    );
    println!();
    println!("More keys: `stormhook apikey create`, or `POST /api/v1/apikeys`.");
    println!();
}

/// `--packs`, or `<data-dir>/packs` filled with the example packs the first time.
fn resolve_packs(args: &ServeArgs) -> anyhow::Result<PathBuf> {
    if let Some(packs) = &args.packs {
        std::fs::create_dir_all(packs)
            .with_context(|| format!("creating the packs folder {}", packs.display()))?;
        return Ok(packs.clone());
    }
    let packs = args.store.data_dir.join("packs");
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

/// One `serve` per data directory. On SQLite the rules engine reads the instances that follow
/// the last one it took, so two servers on one store would each evaluate every instance (and
/// run every action twice); the second is refused instead. (On PostgreSQL nodes claim work, and
/// several may share the database, each with its own data directory for packs and cache.)
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let path = dir.join("stormhook.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `stormhook serve` is using the data directory {} (it holds a lock on {}); stop it, or give this server its own --data-dir",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The origin (`scheme://host[:port]`) of a URL, or the URL itself when it does not parse.
fn origin_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) if parsed.has_host() => parsed.origin().ascii_serialization(),
        _ => url.trim_end_matches('/').to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn the_webui_url_defaults_to_the_origin_of_the_api_url() {
        assert_eq!(
            origin_of("https://st2.example.com/api"),
            "https://st2.example.com"
        );
        assert_eq!(origin_of("http://10.0.0.1:9101"), "http://10.0.0.1:9101");
        assert_eq!(origin_of("not a url/"), "not a url");
    }
}
