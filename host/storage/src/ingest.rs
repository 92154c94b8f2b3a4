//! Group commit of accepted events.
//!
//! Requests hand their event to one writer task and wait for its answer. The writer takes every
//! event that is waiting (up to [`MAX_BATCH`]), commits them in one transaction, and answers all
//! of them. Under load one fsync covers hundreds of requests; with one request in flight it
//! costs what a single commit costs. The channel is bounded: when it is full, [`Ingest::submit`]
//! fails at once with [`IngestError::Overloaded`] so the server can answer 503 instead of queueing
//! without bound. When the store fails for a reason outside the requests (unavailable: a full
//! disk, a database that is gone), the events that queued during that failed commit are
//! answered with the same error at once rather than each waiting for a commit of their own.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::{Committed, NewEvent, Store};

/// Most events committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// Why an event was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// Too many events are waiting; retry later.
    #[error("too many events are waiting to be stored; retry later")]
    Overloaded,
    /// The store cannot commit right now (full disk, locked, I/O error); the event is not
    /// stored, and a retry may succeed.
    #[error("the store cannot accept events right now ({0}); retry later")]
    Unavailable(String),
    /// The commit failed; the event is not stored.
    #[error("storing the event failed: {0}")]
    Failed(String),
    /// The writer has stopped (the server is shutting down).
    #[error("the store is shutting down")]
    Stopped,
}

type Job = (NewEvent, oneshot::Sender<Result<Committed, IngestError>>);

/// A handle to the writer task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
    /// Notified after every commit that stored events.
    committed: Arc<Notify>,
}

impl Ingest {
    /// Starts the writer for `store`, with room for `capacity` waiting events.
    ///
    /// The writer runs on a thread of its own with a single-threaded runtime. On the shared
    /// runtime, each of its await points (begin, inserts, commit) would queue behind hundreds of
    /// connection tasks under load. That stretches every commit cycle, and the cycle is what
    /// bounds ingest throughput.
    ///
    /// # Panics
    ///
    /// When the operating system refuses to start a thread.
    pub fn start(store: Arc<dyn Store>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(capacity.max(1));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the writer");
        let committed = Arc::new(Notify::new());
        let notify = Arc::clone(&committed);
        std::thread::Builder::new()
            .name("stormhook-ingest".into())
            .spawn(move || runtime.block_on(writer(store, rx, notify)))
            .expect("a thread for the writer");
        Self { tx, committed }
    }

    /// Notified (one permit, `notify_one`) after every commit that stored events: the rules
    /// engine waits on it instead of polling the store.
    pub fn committed(&self) -> Arc<Notify> {
        Arc::clone(&self.committed)
    }

    /// Commits one event durably; returns once it is on disk, with what became of it (a
    /// delivery whose key an earlier one holds is a duplicate, and not stored).
    ///
    /// # Errors
    ///
    /// [`IngestError`]: overloaded (nothing waited), failed, unavailable, or stopped. The event
    /// is not stored, except when the store's answer was lost (a connection cut after the
    /// commit was sent) or came after [`ANSWER_TIMEOUT`]: then it may be.
    pub async fn submit(&self, event: NewEvent) -> Result<Committed, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send((event, reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => IngestError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => IngestError::Stopped,
        })?;
        answered(answer).await
    }
}

impl Ingest {
    /// [`Ingest::submit`] for the server's own events (action triggers): waits for room in the
    /// queue instead of failing with [`IngestError::Overloaded`], so a flood of webhooks delays
    /// them but cannot refuse them.
    ///
    /// # Errors
    ///
    /// [`IngestError`]: failed, unavailable, or stopped, as for [`Ingest::submit`].
    pub async fn submit_waiting(&self, event: NewEvent) -> Result<Committed, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| IngestError::Stopped)?;
        answered(answer).await
    }
}

/// The longest a request waits for the writer's answer. A database that stopped answering
/// without closing its connections (a partition, a host powered off: half-open TCP) would
/// otherwise hold the writer, and every request behind it, for the kernel's retransmission
/// timeout. Past it the request gets 503; the event may still commit afterwards (a retried
/// webhook is then stored twice, which is what at-least-once senders expect).
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn answered(
    answer: oneshot::Receiver<Result<Committed, IngestError>>,
) -> Result<Committed, IngestError> {
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(answer) => answer.unwrap_or(Err(IngestError::Stopped)),
        Err(_) => Err(IngestError::Unavailable(format!(
            "the store did not answer within {} s",
            ANSWER_TIMEOUT.as_secs()
        ))),
    }
}

async fn writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>, committed: Arc<Notify>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    // While the store cannot commit (a full disk), every batch fails at once: one log line
    // every few seconds says how many, rather than one per batch.
    let mut quiet_until: Option<std::time::Instant> = None;
    let mut failed_quietly = 0usize;
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<_>) = jobs.drain(..).unzip();
        let outcome = store.commit_events(&events).await.map_err(|e| {
            let now = std::time::Instant::now();
            if quiet_until.is_none_or(|t| now >= t) {
                tracing::error!(
                    events = events.len(),
                    failed_since_last_report = failed_quietly,
                    "committing accepted events failed (answered 503 or 500, nothing stored): {e}"
                );
                quiet_until = Some(now + LOG_EVERY);
                failed_quietly = 0;
            } else {
                failed_quietly += events.len();
            }
            if e.is_unavailable() {
                IngestError::Unavailable(e.cause())
            } else {
                IngestError::Failed(e.to_string())
            }
        });
        if outcome.is_ok() && quiet_until.take().is_some() {
            tracing::info!(
                failed_since_last_report = failed_quietly,
                "committing accepted events works again"
            );
            failed_quietly = 0;
        }
        if outcome.is_ok() {
            committed.notify_one();
        }
        let (outcome, outcomes) = match outcome {
            Ok(each) => (Ok(Committed::Stored), each),
            Err(e) => (Err(e), Vec::new()),
        };
        let unavailable = matches!(outcome, Err(IngestError::Unavailable(_)));
        let mut each = outcomes.into_iter();
        for reply in replies {
            let _ = reply.send(match (&outcome, each.next()) {
                (Ok(_), Some(one)) => Ok(one),
                _ => outcome.clone(),
            });
        }
        if unavailable {
            // The store just failed for a reason outside the requests (a database that is gone
            // can take the whole connection wait to say so). The events that queued meanwhile
            // would each wait that long again before their own batch failed: answer them now
            // (503), and let the next arrivals try the store afresh.
            let mut drained = 0usize;
            while let Ok((_, reply)) = rx.try_recv() {
                let _ = reply.send(outcome.clone());
                drained += 1;
            }
            failed_quietly += drained;
        }
    }
}

/// How often a run of failed commits is reported.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
