//! Retention: nothing is kept forever by accident. Every `interval`, records older than their
//! time-to-live are deleted in small batches ([`BATCH`] rows per short transaction, a pause
//! between batches), so a purge never holds the store for long and ingest goes on beside it.
//! Only finished records go (see [`Store::purge`]); on a shared store at most one node purges
//! at a time. StackStorm's garbage collector has the same knobs (`trigger_instances_ttl`,
//! `traces_ttl`, `rule_enforcements_ttl`, `action_executions_ttl`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use stormhook_storage::{Retained, Store, ids};
use tokio::task::JoinHandle;

use crate::stop::Stop;

/// Rows deleted per transaction.
pub const BATCH: u64 = 500;
/// The pause between two batches: other writers get the store in between.
const PAUSE: Duration = Duration::from_millis(20);

/// How long each kind of record is kept, and how often to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Time-to-live per kind; a kind that is absent is kept forever.
    pub ttl: HashMap<Retained, Duration>,
    /// How often a purge pass runs.
    pub interval: Duration,
}

impl Retention {
    /// StackStorm-like defaults: everything kept 30 days, purged every minute.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

    /// Everything kept forever.
    pub fn keep_forever() -> Self {
        Self {
            ttl: HashMap::new(),
            interval: Duration::from_secs(60),
        }
    }

    /// Keeps `what` for `ttl` (`None`: forever).
    #[must_use]
    pub fn with(mut self, what: Retained, ttl: Option<Duration>) -> Self {
        match ttl {
            Some(ttl) => self.ttl.insert(what, ttl),
            None => self.ttl.remove(&what),
        };
        self
    }

    /// The time-to-live of `what`, if it is purged.
    pub fn ttl(&self, what: Retained) -> Option<Duration> {
        self.ttl.get(&what).copied()
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retained::ALL
            .into_iter()
            .fold(Self::keep_forever(), |r, what| {
                r.with(what, Some(Self::DEFAULT_TTL))
            })
    }
}

/// Starts the purger, unless nothing is purged.
pub(crate) fn start(
    store: Arc<dyn Store>,
    retention: Retention,
    stop: Stop,
) -> Option<JoinHandle<()>> {
    if retention.ttl.is_empty() {
        tracing::info!("retention: every record is kept forever");
        return None;
    }
    Some(tokio::spawn(run(store, retention, stop)))
}

async fn run(store: Arc<dyn Store>, retention: Retention, mut stop: Stop) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(retention.interval) => {}
            () = stop.wait() => return,
        }
        for what in Retained::ALL {
            let Some(ttl) = retention.ttl(what) else {
                continue;
            };
            let before = ids::ago(ttl);
            let mut purged = 0u64;
            loop {
                if stop.requested() {
                    return;
                }
                match store.purge(what, &before, BATCH).await {
                    Ok(n) => {
                        purged += n;
                        if n < BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(
                            kind = what.as_str(),
                            "retention purge failed (retried next pass): {e}"
                        );
                        break;
                    }
                }
                tokio::time::sleep(PAUSE).await;
            }
            if purged > 0 {
                tracing::info!(kind = what.as_str(), purged, older_than = %before, "retention purged old records");
            }
        }
    }
}
