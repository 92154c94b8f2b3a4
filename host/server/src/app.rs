//! The one wiring of the whole application, shared by `stormhook serve` and the tests:
//! [`Stormhook::start`] starts the automation domain and the credentials, and
//! [`Stormhook::serve`] serves the API until a shutdown signal, then stops the automation
//! domain and joins its tasks.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stormhook_automation::Automation;
use stormhook_automation::app::StartError;
use tokio::net::TcpListener;

use crate::auth::Auth;
use crate::{AppState, ConnectionLimits, Settings, Shared};

/// What [`Stormhook::start`] needs.
#[derive(Debug)]
pub struct Config {
    /// The automation domain's settings (store, packs, runtime, runners).
    pub automation: stormhook_automation::Settings,
    /// The htpasswd file `POST /auth/v1/tokens` checks passwords against (none: it refuses
    /// every user).
    pub htpasswd: Option<PathBuf>,
    /// The longest lifetime of a token.
    pub token_ttl: Duration,
}

/// The running application, before and while it serves.
pub struct Stormhook {
    /// The automation domain.
    pub automation: Automation,
    /// Credentials: API keys, tokens, htpasswd.
    pub auth: Arc<Auth>,
}

/// How the API is served: request settings, connection limits, TLS.
#[derive(Debug, Default)]
pub struct Serving {
    /// Request-level settings.
    pub settings: Settings,
    /// Connection-level limits.
    pub limits: ConnectionLimits,
    /// TLS, when serving HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for Stormhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stormhook")
            .field("automation", &self.automation)
            .finish_non_exhaustive()
    }
}

impl Stormhook {
    /// Starts the automation domain and the credentials.
    ///
    /// # Errors
    ///
    /// The automation domain cannot start.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let automation = Automation::start(config.automation).await?;
        let auth = Arc::new(Auth::new(
            Arc::clone(&automation.store),
            config.htpasswd,
            config.token_ttl,
        ));
        if let Some(mut changes) = automation.store.changes() {
            // Another node changed or deleted an API key: forget what this node cached, so
            // the change holds here at once rather than after the cache's lifetime
            // (`auth::CACHE_TTL`, the bound when a notification is missed).
            let auth = Arc::downgrade(&auth);
            tokio::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match changes.recv().await {
                        Ok(stormhook_storage::Change::Credentials) | Err(RecvError::Lagged(_)) => {
                            let Some(auth) = auth.upgrade() else { return };
                            auth.invalidate();
                        }
                        Ok(_) => {}
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        }
        Ok(Self { automation, auth })
    }

    /// The router's state for these request settings.
    pub fn state(&self, settings: Settings) -> AppState {
        let automation = &self.automation;
        AppState::new(Shared {
            packs: Arc::clone(&automation.packs),
            ingest: automation.ingest.clone(),
            store: Arc::clone(&automation.store),
            auth: Arc::clone(&self.auth),
            settings: Arc::new(settings),
            executor: Arc::clone(&automation.executor),
            senders: Arc::default(),
        })
    }

    /// Serves the API on `listener` until `shutdown` completes, finishes the requests in
    /// flight, then stops the automation domain and waits for its tasks.
    ///
    /// # Errors
    ///
    /// The listener fails (the automation domain is stopped all the same).
    pub async fn serve(
        self,
        listener: TcpListener,
        serving: Serving,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state(serving.settings);
        let served = crate::serve(listener, state, serving.limits, serving.tls, shutdown).await;
        self.automation.shutdown().await;
        served
    }
}
