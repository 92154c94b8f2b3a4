//! What a node does when the store is shared by several nodes (PostgreSQL): it renews the
//! leases of the work it holds, settles the executions of nodes that died, and applies the
//! changes other nodes announce.
//!
//! - Every third of the lease, [`Store::renew_leases`] extends this node's claims: the trigger
//!   instances its engine holds (`engine::Held`) and the executions it runs. A claim the node
//!   made but never received (its answer was lost with a broken connection) is not renewed,
//!   so it expires and is taken over like a dead node's, except that an execution it claimed
//!   that way goes back to `requested` at once (`Executor::release_unheld`): this node knows
//!   it never ran it. A node that stops renewing (killed, frozen,
//!   cut off from the database) loses them when the lease expires: other nodes' rules engines
//!   claim its instances again (at least once in all; the unique (instance, rule) key keeps
//!   the enforcements single), and their executors mark its running executions `abandoned`
//!   (not run twice). The renewal also returns this node's executions that another node moved
//!   to `canceling`, the fallback for a missed notification.
//! - Every half lease, [`Executor::recover_orphans`] settles executions whose node's lease
//!   expired.
//! - Every 30 s the API rules are reloaded, in case a notification was lost while the
//!   listener reconnected.
//! - [`Store::changes`] carries [`Change`]s: `Rules` reloads the rules created through the API
//!   (so a webhook a rule registers on one node answers on every node), `Cancel` stops a run
//!   here, `Work` wakes the rules engine and the executor (they poll too, as the fallback).
//!   `Credentials` is for the server's credential cache, which listens itself.
//!
//! A store of one node (SQLite) has none of this: nothing starts.

use std::sync::Arc;
use std::time::Duration;

use stormhook_storage::{Change, Store};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::engine::Held;
use crate::executions::Executor;
use crate::packs::{PackManager, load_api_rules};
use crate::stop::Stop;

/// Starts the cluster tasks when the store is shared; none otherwise.
pub(crate) fn start(
    store: &Arc<dyn Store>,
    packs: &Arc<PackManager>,
    executor: &Arc<Executor>,
    engine: &Arc<Notify>,
    held: &Arc<Held>,
    stop: &Stop,
) -> Vec<JoinHandle<()>> {
    let Some(cluster) = store.cluster() else {
        return Vec::new();
    };
    tracing::info!(
        node = %cluster.node_id,
        lease_secs = cluster.lease.as_secs_f64(),
        "sharing the store with other nodes: work is claimed under leases"
    );
    let lease = cluster.lease;
    let mut tasks = vec![
        tokio::spawn(renew(
            Arc::clone(store),
            Arc::clone(executor),
            Arc::clone(held),
            lease / 3,
            stop.clone(),
        )),
        tokio::spawn(reap(Arc::clone(executor), lease / 2, stop.clone())),
        tokio::spawn(refresh_rules(
            Arc::clone(store),
            Arc::clone(packs),
            stop.clone(),
        )),
    ];
    if let Some(changes) = store.changes() {
        tasks.push(tokio::spawn(apply_changes(
            changes,
            Arc::clone(store),
            Arc::clone(packs),
            Arc::clone(executor),
            Arc::clone(engine),
            stop.clone(),
        )));
    }
    tasks
}

/// Sleeps `period`, or less if the stop comes first; whether to go on.
async fn tick(period: Duration, stop: &mut Stop) -> bool {
    tokio::select! {
        () = tokio::time::sleep(period) => !stop.requested(),
        () = stop.wait() => false,
    }
}

async fn renew(
    store: Arc<dyn Store>,
    executor: Arc<Executor>,
    held: Arc<Held>,
    every: Duration,
    mut stop: Stop,
) {
    let mut failing = false;
    while tick(every, &mut stop).await {
        let (instances, executions) = (held.ids(), executor.held_ids());
        match store.renew_leases(&instances, &executions).await {
            Ok(renewal) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("renewing this node's leases works again");
                }
                for id in renewal.canceling {
                    executor.signal_cancel(&id);
                }
                executor.release_unheld(&renewal.unheld).await;
            }
            Err(e) if !failing => {
                failing = true;
                tracing::error!(
                    "cannot renew this node's leases (its claims expire and other nodes take the work if this lasts): {e}"
                );
            }
            Err(_) => {}
        }
    }
}

async fn reap(executor: Arc<Executor>, every: Duration, mut stop: Stop) {
    while tick(every, &mut stop).await {
        if let Err(e) = executor.recover_orphans().await {
            tracing::warn!("cannot settle the executions of stopped nodes: {e}");
        }
    }
}

/// How often the API rules are reloaded whatever the notifications said: a notification sent
/// while this node's listener was reconnecting is lost.
const RULES_REFRESH: Duration = Duration::from_secs(30);

async fn refresh_rules(store: Arc<dyn Store>, packs: Arc<PackManager>, mut stop: Stop) {
    while tick(RULES_REFRESH, &mut stop).await {
        reload_rules(store.as_ref(), &packs).await;
    }
}

async fn apply_changes(
    mut changes: tokio::sync::broadcast::Receiver<Change>,
    store: Arc<dyn Store>,
    packs: Arc<PackManager>,
    executor: Arc<Executor>,
    engine: Arc<Notify>,
    mut stop: Stop,
) {
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            () = stop.wait() => return,
        };
        match change {
            Ok(Change::Rules) => reload_rules(store.as_ref(), &packs).await,
            Ok(Change::Cancel(id)) => {
                executor.signal_cancel(&id);
            }
            Ok(Change::Work) => {
                engine.notify_one();
                executor.notify();
            }
            Ok(Change::Credentials) => {}
            // Changes were missed: the ones that matter here are rules (reload them) and
            // cancels (the lease renewal finds those).
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "missed changes from other nodes; reloading API rules"
                );
                reload_rules(store.as_ref(), &packs).await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn reload_rules(store: &dyn Store, packs: &PackManager) {
    if let Err(e) = load_api_rules(store, packs).await {
        tracing::error!("cannot reload the rules created through the API: {e}");
    }
}
