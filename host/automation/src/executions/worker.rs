//! The executor's background work: recovery at start, the worker that claims `requested`
//! executions and runs them, and the recorder that writes completions in batches and
//! dispatches their action triggers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use stormhook_storage::ingest::IngestError;
use stormhook_storage::{
    Execution, ExecutionStatus, InstanceStatus, Runners, StorageError, TriggerInstance, ids,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::Executor;
use super::document::{finish, masked_parameters, promote, transition};
use crate::actions::Outcome;
use crate::stop::Stop;

impl Executor {
    /// Recovers from a stop and starts the worker and the recorder; they run until `stop` is
    /// asked for.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub(crate) async fn start(
        self: &Arc<Self>,
        stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, StorageError> {
        self.recover_orphans().await?;
        let mut tasks = Vec::new();
        if let Some(rx) = self.finished_rx.lock().ok().and_then(|mut rx| rx.take()) {
            tasks.push(tokio::spawn(Arc::clone(self).record(rx, stop.clone())));
        }
        tasks.push(tokio::spawn(Arc::clone(self).work(stop)));
        Ok(tasks)
    }

    /// Settles the executions no live node holds: those a stop left `scheduled` go back to
    /// `requested` (they run), those left `running` become `abandoned` (they may have had
    /// effects, so they are not run twice), those left `canceling` become `canceled`. On a
    /// store of one node that is every one of them, at start; on a shared store, those whose
    /// node's lease expired, at start and then periodically (see `crate::cluster`).
    ///
    /// # Errors
    ///
    /// The store cannot be read or written.
    pub(crate) async fn recover_orphans(&self) -> Result<(), StorageError> {
        for (from, to) in [
            (ExecutionStatus::Scheduled, ExecutionStatus::Requested),
            (ExecutionStatus::Running, ExecutionStatus::Abandoned),
            (ExecutionStatus::Canceling, ExecutionStatus::Canceled),
        ] {
            let left = self.store.orphaned_executions(from).await?;
            for mut execution in left {
                let retried =
                    from == ExecutionStatus::Running && self.retry_abandoned(&mut execution);
                let to = if retried {
                    ExecutionStatus::Requested
                } else {
                    to
                };
                if to == ExecutionStatus::Requested {
                    transition(&mut execution, to);
                } else {
                    let result = json!({"error": "The Stormhook node running this action stopped while it ran; it is not run again because it may already have had effects."});
                    finish(
                        &mut execution,
                        Outcome { status: to, result },
                        &self.hostname,
                    );
                }
                if self.store.update_execution(&execution, &[from]).await? {
                    self.moved.notify_waiters();
                    tracing::warn!(id = %execution.id, action = %execution.action_ref, "execution left {from} by a stop is now {to}");
                }
            }
        }
        // Executions back to `requested` run now.
        self.notify();
        Ok(())
    }

    /// Whether a run of `execution` that a crash or a dead node cut short is run again: its
    /// action has `retry_if_abandoned` and fewer than `MAX_ABANDONED_RUNS` runs were cut
    /// short. If so, counts this one in its context (`abandoned_runs`) and forgets the runner.
    fn retry_abandoned(&self, execution: &mut Execution) -> bool {
        let opted_in = self
            .catalog
            .get(&execution.action_ref)
            .is_some_and(|action| action.retry_if_abandoned);
        let context = &mut execution.document["context"];
        let runs = context["abandoned_runs"].as_u64().unwrap_or(0) + 1;
        if !opted_in || runs >= stormhook_packs::MAX_ABANDONED_RUNS {
            return false;
        }
        if !context.is_object() {
            *context = json!({});
        }
        context["abandoned_runs"] = json!(runs);
        if let Some(liveaction) = execution.document["liveaction"].as_object_mut() {
            liveaction.remove("runner_info");
        }
        tracing::warn!(
            id = %execution.id,
            action = %execution.action_ref,
            abandoned_runs = runs,
            "the run was cut short by a stop; the action has retry_if_abandoned, so it runs again"
        );
        true
    }

    /// The executions this node claimed and has not recorded the end of (their leases are
    /// renewed on a shared store).
    pub(crate) fn held_ids(&self) -> Vec<String> {
        self.held
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Puts back to `requested` the executions this node claimed but never ran: their claim
    /// committed while its answer was lost with a broken connection (the store reports them,
    /// see `Renewal::unheld`). This node's id is new at every start, so it knows for sure that
    /// it did not start them; another node runs them, or this one.
    pub(crate) async fn release_unheld(&self, ids: &[String]) {
        for id in ids {
            let execution = match self.store.execution(id).await {
                Ok(Some(execution)) => execution,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(id, "cannot read an execution claimed but never run: {e}");
                    continue;
                }
            };
            let from = execution.status;
            if !matches!(from, ExecutionStatus::Scheduled | ExecutionStatus::Running) {
                continue;
            }
            let mut execution = execution;
            transition(&mut execution, ExecutionStatus::Requested);
            if let Some(liveaction) = execution.document["liveaction"].as_object_mut() {
                liveaction.remove("runner_info");
            }
            match self.store.update_execution(&execution, &[from]).await {
                Ok(true) => tracing::warn!(
                    id,
                    action = %execution.action_ref,
                    "an execution this node claimed but never ran (the claim's answer was lost) is requested again"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(id, "cannot release an execution claimed but never run: {e}")
                }
            }
        }
        if !ids.is_empty() {
            self.notify();
        }
    }

    /// Stops the run of execution `id` on this node, if it runs here (a cancel through another
    /// node reached this one). Whether it ran here.
    pub(crate) fn signal_cancel(&self, id: &str) -> bool {
        match self.cancels.lock().ok().and_then(|mut c| c.remove(id)) {
            Some(signal) => {
                tracing::info!(id, "canceling the execution at the request of another node");
                signal.send(()).is_ok()
            }
            None => false,
        }
    }

    /// Claims `requested` executions while there are free slots and runs them. It waits for
    /// one free slot, then takes every other free one, and claims that many executions in one
    /// durable write (`scheduled` and `running` logged together; on a shared store, under
    /// this node's lease, skipping those another node is claiming).
    async fn work(self: Arc<Self>, mut stop: Stop) {
        while !stop.requested() {
            let woken = self.wake.notified();
            let first = tokio::select! {
                slot = Arc::clone(&self.slots).acquire_owned() => slot,
                () = stop.wait() => return,
            };
            let Ok(first) = first else { return };
            // Delayed executions that are due join those handed over.
            self.promote_due().await;
            let mut slots = vec![first];
            while let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
                slots.push(slot);
            }
            let start = |execution: &mut Execution| {
                transition(execution, ExecutionStatus::Scheduled);
                transition(execution, ExecutionStatus::Running);
                let mut runner_info = json!({"hostname": self.hostname, "pid": std::process::id()});
                if let Some(cluster) = self.store.cluster() {
                    // Which node ran it, among the nodes sharing the store.
                    runner_info["node"] = json!(cluster.node_id);
                }
                execution.document["liveaction"]["runner_info"] = runner_info;
            };
            // A `core.local` or `core.http` run is claimed only with a heavy slot free, so one
            // that waits for a slot stays `requested` (a stop then leaves it to run later, not
            // `abandoned` as if it had started).
            let mut heavy = Vec::new();
            while heavy.len() < slots.len()
                && let Ok(permit) = Arc::clone(&self.heavy_slots).try_acquire_owned()
            {
                heavy.push(permit);
            }
            // Those handed over first: they are claimed without being read back (a claim is
            // a move from `requested`, so one already claimed, canceled, or not stored is
            // simply not won). Then, with room left, the store's oldest `requested` ones.
            let mut handed = self.take_ready(slots.len(), heavy.len());
            let mut claimed = Vec::with_capacity(slots.len());
            let mut failed = None;
            if !handed.is_empty() {
                for execution in &mut handed {
                    start(execution);
                }
                match self
                    .store
                    .update_executions(&handed, &[ExecutionStatus::Requested])
                    .await
                {
                    Ok(won) => claimed.extend(
                        handed
                            .into_iter()
                            .zip(won)
                            .filter_map(|(execution, ok)| ok.then_some(execution)),
                    ),
                    Err(e) => {
                        // They are still `requested` in the store.
                        self.look_in_store.store(true, Ordering::Relaxed);
                        failed = Some(e);
                    }
                }
            }
            let look = claimed.is_empty() || self.look_in_store.swap(false, Ordering::Relaxed);
            if failed.is_none() && look {
                let heavy_room = heavy.len() - claimed.iter().filter(|e| is_heavy(e)).count();
                for (class, runners) in [
                    (true, Runners::Only(&HEAVY_RUNNERS)),
                    (false, Runners::Except(&HEAVY_RUNNERS)),
                ] {
                    let free = slots.len() - claimed.len();
                    let room = if class { heavy_room.min(free) } else { free };
                    if room == 0 {
                        continue;
                    }
                    match self
                        .store
                        .claim_requested(room as u64, runners, &start)
                        .await
                    {
                        Ok(more) => claimed.extend(more),
                        Err(e) => {
                            self.look_in_store.store(true, Ordering::Relaxed);
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            if let Some(e) = failed
                && claimed.is_empty()
            {
                tracing::error!("cannot claim requested executions: {e}");
                drop(slots);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.wait() => {}
                }
                continue;
            }
            let found = !claimed.is_empty();
            if found {
                if let Ok(mut held) = self.held.lock() {
                    held.extend(claimed.iter().map(|e| e.id.clone()));
                }
                self.moved.notify_waiters();
            }
            // The slots not used are freed when `slots` and `heavy` are dropped.
            for (execution, slot) in claimed.into_iter().zip(slots.drain(..)) {
                let heavy_slot = if is_heavy(&execution) {
                    heavy.pop()
                } else {
                    None
                };
                let me = Arc::clone(&self);
                tokio::spawn(async move {
                    me.run(execution).await;
                    drop((slot, heavy_slot));
                });
            }
            drop((slots, heavy));
            if !found {
                // Until woken, or the next delayed execution is due, or a second passed.
                let idle = self
                    .until_due()
                    .map_or(IDLE_POLL, |left| left.min(IDLE_POLL));
                tokio::select! {
                    () = woken => {}
                    () = tokio::time::sleep(idle) => {}
                    () = stop.wait() => {}
                }
            }
        }
    }

    /// Moves the `delayed` executions that are due to `requested` and hands them over, then
    /// reads when the next one is due; or, when none is due, reads that only if it may have
    /// changed (one was stored, or another node said so). Most passes do no IO.
    async fn promote_due(&self) {
        let look = self.look_for_delayed.swap(false, Ordering::Acquire);
        let due = self.until_due().is_some_and(|left| left.is_zero());
        if !look && !due {
            return;
        }
        let read = async {
            if due {
                let promoted = self
                    .store
                    .promote_delayed(&ids::now(), super::MAX_READY as u64, &promote)
                    .await?;
                if !promoted.is_empty() {
                    tracing::debug!(count = promoted.len(), "delayed executions are due");
                    self.moved.notify_waiters();
                    self.hand_over(promoted);
                }
            }
            self.store.next_delayed().await
        };
        let next = match read.await {
            Ok(next) => next,
            Err(e) => {
                // Read again at the next pass, a poll later.
                tracing::error!("cannot promote delayed executions: {e}");
                self.look_for_delayed.store(true, Ordering::Release);
                None
            }
        };
        if let Ok(mut next_due) = self.next_due.lock() {
            *next_due = next;
        }
    }

    /// How long until the earliest `delayed` execution known is due (zero once it is); `None`
    /// when none is known.
    fn until_due(&self) -> Option<Duration> {
        self.next_due.lock().ok()?.as_deref().and_then(ids::until)
    }

    /// Runs an execution that the worker moved to `running`.
    async fn run(&self, mut execution: Execution) {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut cancels) = self.cancels.lock() {
            cancels.insert(execution.id.clone(), tx);
        }
        let span = tracing::info_span!(
            "execution",
            id = %execution.id,
            action = %execution.action_ref,
            trigger_instance = %execution.trigger_instance_id.as_deref().unwrap_or("-"),
        );
        tracing::debug!(parent: &span, "execution started");
        let mut outcome = tokio::select! {
            outcome = self.catalog.run(&execution).instrument(span.clone()) => outcome,
            Ok(()) = rx => Outcome { status: ExecutionStatus::Canceled, result: Value::Null },
        };
        if outcome.status == ExecutionStatus::Canceled {
            // The cancel wrote its result (who canceled) and context when it moved the
            // execution to `canceling`; this copy predates that move.
            if let Ok(Some(stored)) = self.store.execution(&execution.id).await {
                outcome.result = stored.document["result"].clone();
                execution.document["context"] = stored.document["context"].clone();
            }
        }
        // A cancel took the signal (on this node, or from another through `signal_cancel`):
        // it wins even when the run ended at the same moment, since the caller was told
        // `canceling`. (A cancel whose signal never reached this node is settled when the end
        // is recorded, see `record`.)
        let canceled_here = self
            .cancels
            .lock()
            .map(|mut cancels| cancels.remove(&execution.id).is_none())
            .unwrap_or(false);
        if canceled_here && outcome.status != ExecutionStatus::Canceled {
            transition(&mut execution, ExecutionStatus::Canceling);
        }
        finish(&mut execution, outcome, &self.hostname);
        tracing::info!(parent: &span, status = %execution.status, "execution finished");
        let _ = self.finished.send(execution);
    }

    /// Records completed executions, every one that is waiting in one durable write, then
    /// dispatches their action triggers (group commit). A write that fails (a full disk, a
    /// locked store) is tried again, with a growing wait and together with the executions that
    /// completed meanwhile, until it succeeds: a completed execution is never dropped.
    ///
    /// At a stop, the completions already received are recorded, and then it ends.
    async fn record(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Execution>, mut stop: Stop) {
        let mut done: Vec<Execution> = Vec::new();
        loop {
            let stopping = tokio::select! {
                received = rx.recv_many(&mut done, 256) => received == 0,
                () = stop.wait() => true,
            };
            if stopping {
                while let Ok(more) = rx.try_recv() {
                    done.push(more);
                }
                if done.is_empty() {
                    return;
                }
            }
            let mut retry = crate::retry::Retry::default();
            let mut gave_up = false;
            let recorded = loop {
                let e = match self.store_completions(&mut done).await {
                    Ok(recorded) => break recorded,
                    Err(e) => e,
                };
                // Not the store being unavailable, and still failing: give up on the batch
                // (its executions stay `running` and are `abandoned` at the next start, as
                // before) rather than stop recording for good.
                let Some(wait) = retry.after(e.is_unavailable()) else {
                    tracing::error!(
                        executions = done.len(),
                        "cannot record the end of executions; they stay running until the next start marks them abandoned: {e}"
                    );
                    gave_up = true;
                    break vec![false; done.len()];
                };
                tracing::warn!(
                    executions = done.len(),
                    attempt = retry.failures(),
                    "cannot record the end of executions; trying again in {wait:?}: {e}"
                );
                // At a stop the write is not waited for: the executions stay `running` and the
                // next start marks them `abandoned`, as after a crash.
                let stopped = tokio::select! {
                    () = tokio::time::sleep(wait) => false,
                    () = stop.wait() => true,
                };
                if stopped {
                    tracing::error!(
                        executions = done.len(),
                        "stopping before the end of executions could be recorded; the next start marks them abandoned: {e}"
                    );
                    break vec![false; done.len()];
                }
                // Whatever completed meanwhile joins the same write.
                while let Ok(more) = rx.try_recv() {
                    done.push(more);
                }
            };
            // Recorded (or taken over by another node). Ones given up on stay held: they ran,
            // so they must not look like claims this node never ran (`release_unheld`); they
            // stay `running` under this node's lease until it stops, then are abandoned.
            if !gave_up && let Ok(mut held) = self.held.lock() {
                for execution in &done {
                    held.remove(&execution.id);
                }
            }
            self.moved.notify_waiters();
            let triggers = done
                .iter()
                .zip(recorded)
                .filter(|(_, ok)| *ok)
                .map(|(execution, _)| self.dispatch_action_trigger(execution));
            // Together, so their group commits are shared.
            futures_util::future::join_all(triggers).await;
            done.clear();
            if stopping {
                return;
            }
        }
    }

    /// Writes the ends of `done`; which were written. Each is written only over `running`;
    /// one that is `canceling` in the store instead (a cancel through another node whose
    /// signal did not reach this one) gets its `canceling` step in its log and is written over
    /// that. The others are not this node's to record any more (another node took them over).
    async fn store_completions(&self, done: &mut [Execution]) -> Result<Vec<bool>, StorageError> {
        let mut recorded = self
            .store
            .update_executions(done, &[ExecutionStatus::Running])
            .await?;
        let missed: Vec<usize> = (0..done.len()).filter(|i| !recorded[*i]).collect();
        if missed.is_empty() {
            return Ok(recorded);
        }
        let mut canceled: Vec<Execution> = Vec::with_capacity(missed.len());
        for &i in &missed {
            let mut execution = done[i].clone();
            if execution.status != ExecutionStatus::Canceled {
                mark_canceling(&mut execution);
            }
            canceled.push(execution);
        }
        let written = self
            .store
            .update_executions(&canceled, &[ExecutionStatus::Canceling])
            .await?;
        for ((i, execution), ok) in missed.into_iter().zip(canceled).zip(written) {
            if ok {
                done[i] = execution;
                recorded[i] = true;
            }
        }
        Ok(recorded)
    }

    /// Stores the `core.st2.generic.actiontrigger` instance of a completed execution, in the
    /// execution's trace (StackStorm's notifier dispatches it with the trace context of
    /// `get_trace_db_by_action_execution`).
    async fn dispatch_action_trigger(&self, execution: &Execution) {
        use crate::triggers::ACTION_TRIGGER_TYPE;
        let doc = &execution.document;
        let now = ids::now();
        let instance_id = ids::object_id();
        let trace = execution_trace(execution);
        // StackStorm hands every action trigger to the rules engine. When no enabled rule
        // listens to it, the engine would only mark it processed: it is stored processed at
        // once, which spares the engine half of its input during a burst of executions. (A
        // rule enabled in the instant between this check and the commit does not see it.)
        let listened =
            self.catalog.packs().rules().rules.iter().any(|rule| {
                rule.doc.enabled && crate::packs::listens_to(rule, ACTION_TRIGGER_TYPE)
            });
        let status = if listened {
            InstanceStatus::Pending
        } else {
            InstanceStatus::Processed
        };
        let instance = TriggerInstance {
            id: instance_id,
            trigger: ACTION_TRIGGER_TYPE.to_owned(),
            trigger_type: Some(ACTION_TRIGGER_TYPE.to_owned()),
            payload: json!({
                "execution_id": execution.id,
                "status": execution.status,
                "start_timestamp": execution.start_timestamp,
                "action_name": doc["action"]["name"],
                "action_ref": execution.action_ref,
                "runner_ref": execution.runner,
                "parameters": masked_parameters(doc),
                "result": doc.get("result").cloned().unwrap_or_else(|| json!({})),
            }),
            occurrence_time: now,
            status,
            trace_id: Some(trace.id.clone()),
            depth: crate::documents::depth_of(&doc["context"]),
        };
        let event = stormhook_storage::NewEvent::new(trace, vec![instance]);
        // Group commit: shares its fsync with webhooks and other completions. It waits for
        // room in the queue rather than being refused when webhooks fill it, and a store that
        // cannot commit now is waited out, with a growing wait.
        let mut retry = crate::retry::Retry::default();
        loop {
            match self.ingest.submit_waiting(event.clone()).await {
                Ok(_) => return,
                Err(IngestError::Unavailable(cause)) => {
                    let wait = retry.after(true).unwrap_or(crate::retry::RETRY_MAX);
                    tracing::warn!(id = %execution.id, attempt = retry.failures(), "cannot dispatch the action trigger; trying again in {wait:?}: {cause}");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::error!(id = %execution.id, "cannot dispatch the action trigger: {e}");
                    return;
                }
            }
        }
    }
}

/// The trace a completed execution's action trigger joins: the one its context names
/// (`trace_context.id_`: a rule's trigger instance's, a `--trace-tag` or `--trace-id` one). An
/// execution run by hand without one has the trace of its own id, tagged `execution-<id>` as
/// StackStorm tags it (`get_trace_db_by_live_action`): the action trigger starts it (stored
/// only if absent, so once per execution), and trace queries find the execution in it. A
/// named trace the retention purged is started again, with the tag the context gives.
fn execution_trace(execution: &Execution) -> stormhook_storage::Trace {
    let context = &execution.document["context"]["trace_context"];
    let id = context["id_"]
        .as_str()
        .filter(|id| ids::is_object_id(id))
        .unwrap_or(&execution.id);
    let trace_tag = context["trace_tag"]
        .as_str()
        .map_or_else(|| format!("execution-{}", execution.id), str::to_owned);
    stormhook_storage::Trace {
        id: id.to_owned(),
        trace_tag,
        start_timestamp: execution.start_timestamp.clone(),
        trigger_instances: Vec::new(),
    }
}

/// The longest the worker sleeps when idle: it looks in the store for `requested` executions
/// another node stored (the fallback when a notification was missed) at least this often.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Adds a `canceling` step before the last (the end) of a completed execution's log, unless it
/// has one: a cancel came while it ran, and the run ended anyway.
fn mark_canceling(execution: &mut Execution) {
    let Some(log) = execution.document["log"].as_array_mut() else {
        return;
    };
    if log.iter().any(|entry| entry["status"] == "canceling") {
        return;
    }
    let at = log.len().saturating_sub(1);
    let timestamp = log
        .get(at)
        .and_then(|entry| entry.get("timestamp").cloned())
        .unwrap_or(Value::Null);
    log.insert(
        at,
        json!({"status": ExecutionStatus::Canceling, "timestamp": timestamp}),
    );
}

/// The runners whose runs are bounded by [`super::MAX_PARALLEL_HEAVY`]: a process, a
/// connection.
const HEAVY_RUNNERS: [&str; 2] = [crate::actions::LOCAL_RUNNER, crate::actions::HTTP_RUNNER];

/// Whether `execution` runs on a heavy runner.
pub(super) fn is_heavy(execution: &Execution) -> bool {
    HEAVY_RUNNERS.contains(&execution.runner.as_str())
}
