//! The SQLite backend: one file in the data directory, WAL with `synchronous=FULL`.
//!
//! With WAL and FULL, every commit is fsync'd before it returns: a transaction that committed
//! survives a process crash, an OS crash and a power loss. (NORMAL survives a process crash but
//! may lose the last commits on power loss; OFF may corrupt.) The cost, one fsync per commit,
//! is paid once per batch thanks to [`crate::ingest::Ingest`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::OptionalExtension;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::crypto::DatastoreKey;
use crate::models::*;
use crate::sql::{self, KeySource};
use crate::status::{ExecutionStatus, InstanceStatus};
use crate::{Result, StorageError, Store};

/// The SQLite store.
///
/// Reads and most writes go through a sqlx pool. The hot write, [`Store::commit_events`], uses
/// one dedicated rusqlite connection. sqlx runs every SQLite statement on a worker thread of its
/// own, and on a busy two-core host each hand-off to that thread waited for the scheduler for
/// milliseconds. That stretched every group-commit cycle about threefold. Both libraries link
/// the same SQLite (libsqlite3-sys 0.30); WAL lets their connections share the file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The writer thread's queue (see [`SqliteStore::write`]).
    writer: std::sync::mpsc::Sender<Job>,
    /// Where the datastore key comes from, and the key once read.
    datastore_key: Arc<KeySource>,
}

/// The default datastore key file, beside the database: `<data-dir>/keys/datastore_key.json`.
pub const DATASTORE_KEY_FILE: &str = "keys/datastore_key.json";

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies the migrations.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or the migrations fail.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with_wal_limit(path, WAL_LIMIT_BYTES).await
    }

    /// [`SqliteStore::open`], with the WAL size past which the writer starts the WAL over
    /// (default [`WAL_LIMIT_BYTES`]). Tests use a small one.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or the migrations fail.
    pub async fn open_with_wal_limit(path: &Path, wal_limit_bytes: u64) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        Self::connect(options, path, wal_limit_bytes).await
    }

    async fn connect(
        options: SqliteConnectOptions,
        path: &Path,
        wal_limit_bytes: u64,
    ) -> Result<Self> {
        // Checkpoints (copying the WAL back into the database, with their own fsyncs) run in
        // the background rather than inside whichever commit crosses the threshold.
        let options = options
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", wal_limit_bytes.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // An ingest path must not wait 30 s (sqlx's default) for a connection.
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        // The checkpoint counts the WAL in frames, one page each.
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&pool)
            .await?;
        let wal_limit_frames =
            i64::try_from(wal_limit_bytes).unwrap_or(i64::MAX) / page_size.max(512);
        let checkpointer = pool.clone();
        let restart_wal = Arc::new(AtomicBool::new(false));
        let restart = Arc::clone(&restart_wal);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut yielded = false;
            let mut failing = false;
            loop {
                tick.tick().await;
                if checkpointer.is_closed() {
                    return;
                }
                // The writer's own checkpoint is due: leave the checkpoint lock to it for one
                // tick. (If it has not committed since, ingest is idle and this one can copy
                // everything.)
                if restart.load(Ordering::Relaxed) && !yielded {
                    yielded = true;
                    continue;
                }
                yielded = false;
                // PASSIVE never blocks writers; it copies what it can.
                let checkpoint =
                    sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(&checkpointer)
                        .await;
                let last_ok = checkpoint.is_ok();
                match checkpoint {
                    Ok((_busy, frames, _copied)) if frames > wal_limit_frames => {
                        restart.store(true, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    // Once per episode (a full disk fails every tick), then once it recovers.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!("WAL checkpoint failed (retried every 200 ms): {e}");
                    }
                    Err(_) => {}
                }
                if failing && last_ok {
                    failing = false;
                    tracing::info!("WAL checkpoint works again");
                }
            }
        });
        let writer = open_writer(path, wal_limit_bytes).map_err(writer_error)?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let thread_restart = Arc::clone(&restart_wal);
        let thread_path = (path.to_owned(), wal_limit_bytes);
        std::thread::Builder::new()
            .name("stormhook-sqlite-writer".into())
            .spawn(move || write_loop(writer, &queue, &thread_restart, &thread_path))
            .map_err(|e| StorageError::Writer(format!("cannot start the writer thread: {e}")))?;
        let data_dir = path.parent().unwrap_or(Path::new("."));
        Ok(Self {
            pool,
            writer: jobs,
            datastore_key: Arc::new(KeySource::lazy(data_dir.join(DATASTORE_KEY_FILE), true)),
        })
    }

    /// Encrypts datastore secrets with the key in `path` (StackStorm's key file format, for
    /// example `/etc/st2/keys/datastore_key.json`) instead of the default
    /// [`DATASTORE_KEY_FILE`], which is generated on first use. The file is read now.
    ///
    /// # Errors
    ///
    /// The file cannot be read or holds no usable key.
    pub fn with_datastore_key(mut self, path: &Path) -> Result<Self> {
        self.datastore_key = Arc::new(KeySource::read_now(path)?);
        Ok(self)
    }

    /// Runs `work` on the writer thread, inside the next write transaction, and returns what
    /// it returned once that transaction committed.
    ///
    /// Every hot write goes this way: accepted events, the engine's results, claims and ends
    /// of executions. The writer thread takes every job waiting, runs each under a savepoint of
    /// one transaction (a job that fails is rolled back alone and gets its error), and commits
    /// them together: one fsync for all the stages' work of the moment, which is what bounds
    /// the pipeline (each commit costs about 2 ms here). Jobs never wait for each other in
    /// SQLite's busy handler, and rusqlite runs their statements on the writer thread (sqlx
    /// would hand each statement to a thread of its own and back). `work` gets owned data, so
    /// JSON is written by the caller, not by the thread every write waits for.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let Some(tx) = tx else {
                // Not run: the transaction could not begin.
                return (
                    false,
                    Box::new(move |outcome: Result<()>| {
                        let _ = reply.send(Err(outcome.err().unwrap_or_else(|| {
                            StorageError::Writer("the write was not run".into())
                        })));
                    }) as Reply,
                );
            };
            match work(tx) {
                Ok(value) => (
                    true,
                    Box::new(move |committed: Result<()>| {
                        let _ = reply.send(committed.map(|()| value));
                    }) as Reply,
                ),
                Err(e) => {
                    let e = writer_error(e);
                    (
                        false,
                        Box::new(move |_: Result<()>| {
                            let _ = reply.send(Err(e));
                        }) as Reply,
                    )
                }
            }
        });
        self.writer
            .send(job)
            .map_err(|_| StorageError::Writer("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Writer("the writer thread has stopped".into()))?
    }
}

/// A write for the writer thread: runs inside the transaction, says whether it succeeded (or
/// is to be rolled back), and gives what to answer once the transaction's fate is known.
/// It gets no transaction when none could begin.
type Job = Box<dyn FnOnce(Option<&rusqlite::Transaction<'_>>) -> (bool, Reply) + Send>;
/// Answers a job with the commit's outcome.
type Reply = Box<dyn FnOnce(Result<()>) + Send>;

/// Most jobs in one transaction.
const MAX_JOBS: usize = 256;

/// The writer thread: takes every job waiting (at most [`MAX_JOBS`]), runs them in one
/// transaction, each under a savepoint, commits, and answers each.
fn write_loop(
    mut conn: rusqlite::Connection,
    queue: &std::sync::mpsc::Receiver<Job>,
    restart_wal: &AtomicBool,
    path: &(std::path::PathBuf, u64),
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if restart_wal.swap(false, Ordering::Relaxed) {
            // Copies the rest of the WAL, and the commit below, finding it all copied, starts
            // the WAL over. That is best effort: a reader still on old frames, or a write
            // through the pool in between (the API), leaves the WAL as it is, and the next
            // background checkpoint asks again. PASSIVE never waits for locks (a RESTART
            // checkpoint would hold the writer back until every reader had finished), but
            // this commit waits for the copy and its fsyncs: what was written since the last
            // background checkpoint.
            let checkpoint: rusqlite::Result<(i64, i64, i64)> =
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                });
            match checkpoint {
                Ok((busy, frames, copied)) => {
                    tracing::debug!(busy, frames, copied, "WAL checkpoint before a restart");
                }
                Err(e) => tracing::warn!("WAL checkpoint before a restart failed: {e}"),
            }
        }
        let mut jobs: std::collections::VecDeque<Job> = jobs.into();
        let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
        let outcome = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        {
            Err(e) => Err(e),
            Ok(tx) => {
                let mut ran = || -> rusqlite::Result<()> {
                    while let Some(job) = jobs.pop_front() {
                        tx.execute_batch("SAVEPOINT job")?;
                        let (ok, reply) = job(Some(&tx));
                        replies.push(reply);
                        if ok {
                            tx.execute_batch("RELEASE job")?;
                        } else {
                            tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
                        }
                    }
                    Ok(())
                };
                // On an error the transaction is rolled back when `tx` is dropped.
                ran().and_then(|()| tx.commit())
            }
        };
        let outcome = outcome.map_err(writer_error);
        if outcome.is_err() {
            heal_writer(&mut conn, &path.0, path.1);
        }
        // Jobs not run (the transaction failed before them) are answered with its error.
        for job in jobs {
            replies.push(job(None).1);
        }
        for reply in replies {
            reply(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(same_error(e)),
            });
        }
    }
}

/// A copy of a writer error (each job of a failed transaction gets one).
fn same_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::Unavailable(m) => StorageError::Unavailable(m.clone()),
        other => StorageError::Writer(other.to_string()),
    }
}

/// The group-commit writer's connection.
fn open_writer(path: &Path, wal_limit_bytes: u64) -> rusqlite::Result<rusqlite::Connection> {
    let writer = rusqlite::Connection::open(path)?;
    writer.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {wal_limit_bytes};"
    ))?;
    // SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between retries. While
    // the rules engine or the executor held the write lock for a millisecond, the writer
    // slept for up to 25 ms, and every request waiting for the commit with it (strace showed
    // the writer asleep most of the time under load). Retry every 100 µs instead, for up to
    // the same 5 s, measured on the clock: a count of 50,000 retries took about 9 s (each
    // sleep overshoots), and longer on a loaded machine, past the 10 s a request waits for its
    // commit.
    writer.busy_handler(Some(|retries: i32| {
        let since = BUSY_SINCE.with(|since| {
            if retries == 0 || since.get().is_none() {
                since.set(Some(std::time::Instant::now()));
            }
            since.get()
        });
        if since.is_some_and(|t| t.elapsed() >= WRITER_BUSY_TIMEOUT) {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
        true
    }))?;
    Ok(writer)
}

/// How long the writer waits for a write lock another connection holds.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// When the writer thread's current wait for the write lock began (its busy handler is a
    /// plain function, so it keeps the time here).
    static BUSY_SINCE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// After a failed commit, makes sure the writer holds no transaction: rusqlite rolls back when
/// its transaction is dropped, but if SQLite still reports one open (the rollback failed too),
/// the connection is replaced. Its state is not known, and closing it rolls back whatever it
/// holds.
fn heal_writer(conn: &mut rusqlite::Connection, path: &Path, wal_limit_bytes: u64) {
    if conn.is_autocommit() {
        return;
    }
    let _ = conn.execute_batch("ROLLBACK");
    if conn.is_autocommit() {
        return;
    }
    match open_writer(path, wal_limit_bytes) {
        Ok(fresh) => {
            tracing::warn!("the writer connection was left inside a transaction; reopened it");
            let stale = std::mem::replace(conn, fresh);
            drop(stale);
        }
        Err(e) => tracing::error!(
            "the writer connection is left inside a transaction and cannot be reopened: {e}"
        ),
    }
}

/// How often the background checkpoint copies the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// The WAL size past which the writer starts the WAL over.
///
/// The background checkpoint is PASSIVE, so it never blocks a commit. But SQLite starts the
/// WAL again from its beginning only when a write begins after every frame has been copied,
/// and while commits keep coming a PASSIVE checkpoint never catches up: under sustained ingest
/// the WAL grew by about 5 KiB per event without end (1.3 GB in 7 s of the ingest benchmark).
/// (A RESTART checkpoint run on another connection waited up to seconds for the lock between
/// commits.) So once the WAL is past this size, the writer itself checkpoints between two of
/// its commits; it only has to copy what the background checkpoint has not, its next commit
/// starts the WAL over (unless a reader or a pool write got in between: then the next
/// background checkpoint asks again), and `journal_size_limit` trims the file back to this
/// size.
pub const WAL_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

const INSERT_ENFORCEMENT: &str = "INSERT INTO rule_enforcements (id, trigger_instance_id, execution_id, failure_reason, rule_ref, rule_id, rule_uid, enforced_at, status) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trigger_instance_id, rule_ref) DO NOTHING";
const INSERT_EXECUTION: &str = "INSERT INTO executions (id, action_ref, runner, status, start_timestamp, end_timestamp, user_name, rule_ref, trigger_instance_id, due_at, run_parameters, document) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const FINISH_INSTANCE: &str =
    "UPDATE trigger_instances SET status = ?, updated_at = ? WHERE id = ?";

fn writer_error(e: rusqlite::Error) -> StorageError {
    match e.sqlite_error() {
        Some(code) if crate::sqlite_code_unavailable(code.extended_code) => {
            StorageError::Unavailable(e.to_string())
        }
        _ => StorageError::Writer(e.to_string()),
    }
}

/// A pooled connection holding a write transaction that sqlx does not know about.
///
/// sqlx (0.8) counts a connection's open transactions itself. When SQLite rolls a transaction
/// back on its own (`SQLITE_FULL`, some I/O errors), that count stays at one: the next
/// `begin()` on the connection becomes a `SAVEPOINT` inside a transaction that is really open,
/// it keeps the write lock, every other writer gets `database is locked`, and its "commits"
/// only release the savepoint (upstream sqlx issues #3742 and #4031). So write transactions
/// are plain `BEGIN IMMEDIATE` ... `COMMIT` statements on a connection taken from the pool, and
/// a connection whose transaction did not commit, for whatever reason (an error, a future
/// dropped half-way), is closed rather than returned to the pool: its transaction state is
/// not known, and closing a SQLite connection rolls back whatever it still holds.
struct WriteTx {
    conn: Option<sqlx::pool::PoolConnection<Sqlite>>,
}

impl WriteTx {
    async fn begin(pool: &SqlitePool) -> Result<Self> {
        let mut tx = Self {
            conn: Some(pool.acquire().await?),
        };
        sqlx::query("BEGIN IMMEDIATE").execute(tx.conn()).await?;
        Ok(tx)
    }

    fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        self.conn.as_mut().expect("a connection until commit")
    }

    /// Commits; the connection goes back to the pool only when the commit succeeded.
    async fn commit(mut self) -> Result<()> {
        sqlx::query("COMMIT").execute(self.conn()).await?;
        // Committed: SQLite is back in autocommit mode, and the connection can be reused.
        drop(self.conn.take());
        Ok(())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

/// Stores a trace unless one with its id is stored (then an event's instances join that one).
const INSERT_TRACE: &str = "INSERT INTO traces (id, trace_tag, start_timestamp) VALUES (?1, ?2, ?3) \
     ON CONFLICT (id) DO NOTHING";

/// One transaction for the whole batch, with cached prepared statements.
fn commit_blocking(
    tx: &rusqlite::Transaction<'_>,
    events: &[NewEvent],
) -> rusqlite::Result<Vec<Committed>> {
    let mut outcomes = Vec::with_capacity(events.len());
    {
        let mut trace = tx.prepare_cached(INSERT_TRACE)?;
        let mut instance = tx.prepare_cached(
            "INSERT INTO trigger_instances (id, trigger_ref, trigger_type, payload, occurrence_time, status, trace_id, updated_at, depth) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5, ?8)",
        )?;
        let deliveries = events.iter().filter(|e| e.delivery.is_some()).count();
        if deliveries > 0 {
            // At least as many as the batch may add, so expired ids cannot pile up.
            purge_expired_deliveries(tx, DELIVERY_PURGE_BATCH.max(2 * deliveries as i64))?;
        }
        for event in events {
            if let Some(delivery) = &event.delivery
                && let Some(original) = claim_delivery(tx, delivery, &event.trace)?
            {
                outcomes.push(original);
                continue;
            }
            outcomes.push(Committed::Stored);
            trace.execute((
                &event.trace.id,
                &event.trace.trace_tag,
                &event.trace.start_timestamp,
            ))?;
            for ti in &event.instances {
                instance.execute((
                    &ti.id,
                    &ti.trigger,
                    &ti.trigger_type,
                    &ti.payload,
                    &ti.occurrence_time,
                    ti.status.as_str(),
                    &ti.trace_id,
                    ti.depth,
                ))?;
            }
        }
    }
    Ok(outcomes)
}

/// How many expired delivery ids a commit that stores deliveries deletes at least.
const DELIVERY_PURGE_BATCH: i64 = 32;

/// Deletes up to `limit` expired delivery ids (each commit with deliveries deletes more than
/// it adds, so they cannot pile up beyond the ones still in their window).
fn purge_expired_deliveries(tx: &rusqlite::Transaction<'_>, limit: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "DELETE FROM deliveries WHERE key IN (SELECT key FROM deliveries \
         WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
    )?
    .execute(rusqlite::params![crate::ids::now(), limit])?;
    Ok(())
}

/// Records `delivery` under `trace`, unless an unexpired delivery holds its key: then that
/// delivery's trace, as a duplicate. One statement: the primary key decides.
fn claim_delivery(
    tx: &rusqlite::Transaction<'_>,
    delivery: &DeliveryKey,
    trace: &Trace,
) -> rusqlite::Result<Option<Committed>> {
    let claimed = tx
        .prepare_cached(
            "INSERT INTO deliveries (key, trace_id, trace_tag, expires_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (key) DO UPDATE SET trace_id = excluded.trace_id, \
             trace_tag = excluded.trace_tag, expires_at = excluded.expires_at \
             WHERE deliveries.expires_at <= ?5 RETURNING 1",
        )?
        .query_row(
            rusqlite::params![
                delivery.key,
                trace.id,
                trace.trace_tag,
                delivery.expires_at,
                crate::ids::now()
            ],
            |_| Ok(()),
        )
        .optional()?;
    if claimed.is_some() {
        return Ok(None);
    }
    let (trace_id, trace_tag) = tx
        .prepare_cached("SELECT trace_id, trace_tag FROM deliveries WHERE key = ?1")?
        .query_row([&delivery.key], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Some(Committed::Duplicate {
        trace_id,
        trace_tag,
    }))
}

/// An execution's columns, its JSON written out, ready to insert on the writer thread.
struct ExecutionRow {
    id: String,
    action_ref: String,
    runner: String,
    status: &'static str,
    start_timestamp: String,
    end_timestamp: Option<String>,
    user: Option<String>,
    rule_ref: Option<String>,
    trigger_instance_id: Option<String>,
    due_at: Option<String>,
    run_parameters: String,
    document: String,
    /// The parts of the document that never change (`execution_bodies`).
    body: String,
}

impl ExecutionRow {
    fn of(e: &Execution) -> Self {
        Self {
            id: e.id.clone(),
            action_ref: e.action_ref.clone(),
            runner: e.runner.clone(),
            status: e.status.as_str(),
            start_timestamp: e.start_timestamp.clone(),
            end_timestamp: e.end_timestamp.clone(),
            user: e.user.clone(),
            rule_ref: e.rule_ref.clone(),
            trigger_instance_id: e.trigger_instance_id.clone(),
            due_at: e.due_at.clone(),
            run_parameters: e.run_parameters.to_string(),
            document: document_part(&e.document, false),
            body: document_part(&e.document, true),
        }
    }
}

/// The top-level fields of an execution's document that never change once it is requested;
/// when they are objects, they are kept in `execution_bodies` (migration 0009).
const BODY_FIELDS: [&str; 6] = [
    "action",
    "runner",
    "rule",
    "trigger",
    "trigger_type",
    "trigger_instance",
];

fn in_body(key: &str, value: &serde_json::Value) -> bool {
    value.is_object() && BODY_FIELDS.contains(&key)
}

/// The JSON of an execution document's body fields (`body`), or of the others.
fn document_part(document: &serde_json::Value, body: bool) -> String {
    struct Part<'a>(&'a serde_json::Map<String, serde_json::Value>, bool);
    impl serde::Serialize for Part<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().filter(|(k, v)| in_body(k, v) == self.1))
        }
    }
    match document.as_object() {
        Some(map) => serde_json::to_string(&Part(map, body)).unwrap_or_default(),
        None if body => "{}".to_owned(),
        None => document.to_string(),
    }
}

/// An execution from a row of `executions` joined with its `execution_bodies` row
/// ([`EXECUTIONS`]): the document put back together.
fn execution_row(row: &SqliteRow) -> Result<Execution> {
    let mut execution = sql::execution(row)?;
    let body: Option<String> = row.try_get("body")?;
    if let Some(body) = body
        && let serde_json::Value::Object(fields) = sql::json(&body)?
        && let Some(document) = execution.document.as_object_mut()
    {
        document.extend(fields);
    }
    Ok(execution)
}

/// The document conditions of an execution query: a field of [`BODY_FIELDS`] is read from
/// the execution's `execution_bodies` row, the others from `executions.document`. A string
/// matches a text value, or a number whose text it is.
fn push_field_filters(
    qb: &mut QueryBuilder<'_, Sqlite>,
    filters: &[FieldFilter],
    traces: &[String],
) {
    if !traces.is_empty() {
        qb.push(" AND json_extract(executions.document, '$.context.trace_context.id_') IN (");
        let mut list = qb.separated(", ");
        for trace in traces {
            list.push_bind(trace.clone());
        }
        list.push_unseparated(")");
    }
    for filter in filters {
        let column = if BODY_FIELDS.contains(&filter.path[0].as_str()) {
            "(SELECT body FROM execution_bodies AS b WHERE b.execution_id = executions.id)"
        } else {
            "executions.document"
        };
        // The keys are quoted (the API refuses keys holding a quote or a backslash).
        let path: String = std::iter::once("$".to_owned())
            .chain(filter.path.iter().map(|k| format!(".\"{k}\"")))
            .collect();
        match &filter.value {
            None => {
                qb.push(format!(" AND COALESCE(json_type({column}, "))
                    .push_bind(path)
                    .push("), 'null') = 'null'");
            }
            Some(value) => {
                qb.push(format!(" AND (CASE json_type({column}, "))
                    .push_bind(path.clone())
                    .push(format!(") WHEN 'text' THEN json_extract({column}, "))
                    .push_bind(path.clone())
                    .push(") WHEN 'integer' THEN CAST(json_extract(")
                    .push(column)
                    .push(", ")
                    .push_bind(path.clone())
                    .push(") AS TEXT) WHEN 'real' THEN CAST(json_extract(")
                    .push(column)
                    .push(", ")
                    .push_bind(path)
                    .push(") AS TEXT) END) = ")
                    .push_bind(value.clone());
            }
        }
    }
}

/// Executions with their bodies, for `SELECT * FROM`.
const EXECUTIONS: &str =
    "executions LEFT JOIN execution_bodies ON execution_bodies.execution_id = executions.id";

/// A new state of an execution, ready to write on the writer thread.
struct UpdateRow {
    id: String,
    status: &'static str,
    end_timestamp: Option<String>,
    document: String,
}

impl UpdateRow {
    fn of(e: &Execution) -> Self {
        Self {
            id: e.id.clone(),
            status: e.status.as_str(),
            end_timestamp: e.end_timestamp.clone(),
            // The body fields never change: only the rest is written again.
            document: document_part(&e.document, false),
        }
    }
}

/// An instance's results, ready to write on the writer thread.
struct FinishedRow {
    id: String,
    status: &'static str,
    enforcements: Vec<RuleEnforcement>,
    executions: Vec<ExecutionRow>,
}

impl FinishedRow {
    fn of(done: &FinishedInstance) -> Self {
        Self {
            id: done.id.clone(),
            status: done.status.as_str(),
            enforcements: done.enforcements.clone(),
            executions: done.executions.iter().map(ExecutionRow::of).collect(),
        }
    }
}

fn insert_execution_blocking(
    tx: &rusqlite::Transaction<'_>,
    e: &ExecutionRow,
) -> rusqlite::Result<()> {
    tx.prepare_cached(INSERT_EXECUTION)?.execute((
        &e.id,
        &e.action_ref,
        &e.runner,
        e.status,
        &e.start_timestamp,
        &e.end_timestamp,
        &e.user,
        &e.rule_ref,
        &e.trigger_instance_id,
        &e.due_at,
        &e.run_parameters,
        &e.document,
    ))?;
    tx.prepare_cached("INSERT INTO execution_bodies (execution_id, body) VALUES (?1, ?2)")?
        .execute((&e.id, &e.body))?;
    Ok(())
}

/// The engine's results: enforcements, executions and the instances' new statuses.
fn finish_blocking(
    tx: &rusqlite::Transaction<'_>,
    finished: &[FinishedRow],
) -> rusqlite::Result<()> {
    let now = crate::ids::now();
    for done in finished {
        // Executions named by an enforcement that was already stored: not requested again.
        let mut skipped: Vec<&str> = Vec::new();
        for e in &done.enforcements {
            let inserted = tx.prepare_cached(INSERT_ENFORCEMENT)?.execute((
                &e.id,
                &e.trigger_instance_id,
                &e.execution_id,
                &e.failure_reason,
                &e.rule_ref,
                &e.rule_id,
                &e.rule_uid,
                &e.enforced_at,
                e.status.as_str(),
            ))?;
            if inserted == 0 {
                tracing::warn!(
                    trigger_instance = %e.trigger_instance_id,
                    rule = %e.rule_ref,
                    "the rule was already enforced for this trigger instance; the second evaluation is not recorded"
                );
                skipped.extend(e.execution_id.as_deref());
            }
        }
        for row in &done.executions {
            if skipped.contains(&row.id.as_str()) {
                continue;
            }
            insert_execution_blocking(tx, row)?;
        }
        tx.prepare_cached(FINISH_INSTANCE)?
            .execute((done.status, &now, &done.id))?;
    }
    Ok(())
}

/// Replaces executions (status, end and document), each only from one of `only_from` (any
/// status when empty); which were replaced.
fn update_executions_blocking(
    tx: &rusqlite::Transaction<'_>,
    executions: &[UpdateRow],
    only_from: &[ExecutionStatus],
) -> rusqlite::Result<Vec<bool>> {
    let mut sql = String::from(
        "UPDATE executions SET status = ?1, end_timestamp = ?2, document = ?3 WHERE id = ?4",
    );
    if !only_from.is_empty() {
        let list: Vec<String> = only_from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        sql.push_str(&format!(" AND status IN ({})", list.join(", ")));
    }
    let mut update = tx.prepare_cached(&sql)?;
    let mut replaced = Vec::with_capacity(executions.len());
    for e in executions {
        let done = update.execute((e.status, &e.end_timestamp, &e.document, &e.id))?;
        replaced.push(done > 0);
    }
    Ok(replaced)
}

fn limit_clause(qb: &mut QueryBuilder<'_, Sqlite>, limit: Option<u64>, offset: u64) {
    qb.push(" LIMIT ")
        .push_bind(limit.map_or(-1, |l| l as i64))
        .push(" OFFSET ")
        .push_bind(offset as i64);
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit_events(&self, events: &[NewEvent]) -> Result<Vec<Committed>> {
        let events = events.to_vec();
        self.write(move |tx| commit_blocking(tx, &events)).await
    }

    async fn trigger_instance(&self, id: &str) -> Result<Option<TriggerInstance>> {
        let row = sqlx::query("SELECT * FROM trigger_instances WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::trigger_instance).transpose()
    }

    async fn list_trigger_instances(
        &self,
        q: &TriggerInstanceQuery,
    ) -> Result<Page<TriggerInstance>> {
        let (rows, total) = self
            .page_of(
                "trigger_instances",
                |qb| sql::push_instance_filters(qb, q),
                "occurrence_time DESC, trigger_ref ASC, rowid DESC",
                q.limit,
                q.offset,
            )
            .await?;
        Ok(Page {
            items: rows
                .iter()
                .map(sql::trigger_instance)
                .collect::<Result<_>>()?,
            total,
        })
    }

    async fn set_trigger_instance_status(&self, id: &str, status: InstanceStatus) -> Result<bool> {
        let done =
            sqlx::query("UPDATE trigger_instances SET status = ?, updated_at = ? WHERE id = ?")
                .bind(status.as_str())
                .bind(crate::ids::now())
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn pending_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<(i64, std::result::Result<TriggerInstance, Unreadable>)>> {
        // The partial index on pending instances holds them in rowid order.
        let rows = sqlx::query(
            "SELECT rowid AS seq, * FROM trigger_instances WHERE status = 'pending' AND rowid > ? \
             ORDER BY rowid LIMIT ?",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sql::queued_instance).collect()
    }

    async fn requeue_processing(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE trigger_instances SET status = 'pending' WHERE status = 'processing'",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn finish_trigger_instances(&self, finished: &[FinishedInstance]) -> Result<()> {
        // JSON is written before the writer is taken: it holds the lock every write waits for.
        let rows: Vec<FinishedRow> = finished.iter().map(FinishedRow::of).collect();
        self.write(move |tx| finish_blocking(tx, &rows)).await
    }

    async fn insert_execution(&self, execution: &Execution, trace: Option<&Trace>) -> Result<()> {
        let row = ExecutionRow::of(execution);
        let trace = trace.cloned();
        let outcome = self
            .write(move |tx| {
                if let Some(t) = &trace {
                    tx.prepare_cached(INSERT_TRACE)?.execute((
                        &t.id,
                        &t.trace_tag,
                        &t.start_timestamp,
                    ))?;
                }
                insert_execution_blocking(tx, &row)?;
                Ok(())
            })
            .await;
        match outcome {
            Err(StorageError::Writer(message)) if message.contains("UNIQUE constraint failed") => {
                Err(StorageError::Conflict {
                    message: "execution already exists".into(),
                    existing_id: None,
                })
            }
            other => other,
        }
    }

    async fn execution(&self, id: &str) -> Result<Option<Execution>> {
        sqlx::query(&format!("SELECT * FROM {EXECUTIONS} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(execution_row)
            .transpose()
    }

    async fn list_executions(&self, q: &ExecutionQuery) -> Result<Page<Execution>> {
        let mut count = QueryBuilder::new("SELECT COUNT(*) FROM executions");
        sql::push_execution_filters(&mut count, q);
        push_field_filters(&mut count, &q.fields, &q.traces);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let mut select = QueryBuilder::new(format!("SELECT * FROM {EXECUTIONS}"));
        sql::push_execution_filters(&mut select, q);
        push_field_filters(&mut select, &q.fields, &q.traces);
        select.push(format!(
            " ORDER BY {}",
            sql::execution_order(q.ascending, "executions.rowid")
        ));
        limit_clause(&mut select, q.limit, q.offset);
        let rows = select.build().fetch_all(&self.pool).await?;
        Ok(Page {
            items: rows.iter().map(execution_row).collect::<Result<_>>()?,
            total: total as u64,
        })
    }

    async fn update_execution(&self, e: &Execution, only_from: &[ExecutionStatus]) -> Result<bool> {
        let done = self
            .update_executions(std::slice::from_ref(e), only_from)
            .await?;
        Ok(done.first().copied().unwrap_or(false))
    }

    async fn update_executions(
        &self,
        executions: &[Execution],
        only_from: &[ExecutionStatus],
    ) -> Result<Vec<bool>> {
        let rows: Vec<UpdateRow> = executions.iter().map(UpdateRow::of).collect();
        let only_from = only_from.to_vec();
        self.write(move |tx| update_executions_blocking(tx, &rows, &only_from))
            .await
    }

    /// The oldest `requested` executions, read and started outside the writer's lock, then
    /// moved in one write, each only if it is still `requested` (a cancel may have come
    /// between; SQLite serves one node, so nothing else claims).
    async fn claim_requested(
        &self,
        limit: u64,
        runners: Runners<'_>,
        start: &(dyn for<'e> Fn(&'e mut Execution) + Send + Sync),
    ) -> Result<Vec<Execution>> {
        let sql = format!(
            "SELECT * FROM {EXECUTIONS} WHERE status = 'requested' AND {} \
             ORDER BY executions.rowid LIMIT ?",
            runners.sql()
        );
        let requested = self
            .executions_of(sqlx::query(&sql).bind(i64::try_from(limit).unwrap_or(i64::MAX)))
            .await?;
        crate::move_from(self, requested, start, ExecutionStatus::Requested).await
    }

    async fn promote_delayed(
        &self,
        now: &str,
        limit: u64,
        promote: &(dyn for<'e> Fn(&'e mut Execution) + Send + Sync),
    ) -> Result<Vec<Execution>> {
        let sql = format!(
            "SELECT * FROM {EXECUTIONS} WHERE status = 'delayed' AND due_at <= ? \
             ORDER BY due_at LIMIT ?"
        );
        let due = self
            .executions_of(
                sqlx::query(&sql)
                    .bind(now)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX)),
            )
            .await?;
        crate::move_from(self, due, promote, ExecutionStatus::Delayed).await
    }

    async fn next_delayed(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(sql::NEXT_DELAYED)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn rule_enforcement(&self, id: &str) -> Result<Option<RuleEnforcement>> {
        let row = sqlx::query("SELECT * FROM rule_enforcements WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::enforcement).transpose()
    }

    async fn list_rule_enforcements(&self, q: &EnforcementQuery) -> Result<Page<RuleEnforcement>> {
        let (rows, total) = self
            .page_of(
                "rule_enforcements",
                |qb| sql::push_enforcement_filters(qb, q),
                "enforced_at DESC, rule_ref ASC, rowid DESC",
                q.limit,
                q.offset,
            )
            .await?;
        Ok(Page {
            items: rows.iter().map(sql::enforcement).collect::<Result<_>>()?,
            total,
        })
    }

    async fn trace(&self, id: &str) -> Result<Option<Trace>> {
        let Some(row) = sqlx::query("SELECT * FROM traces WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut traces = self.assemble_traces(std::slice::from_ref(&row)).await?;
        Ok(traces.pop())
    }

    async fn list_traces(&self, q: &TraceQuery) -> Result<Page<Trace>> {
        let filters = |qb: &mut QueryBuilder<'_, Sqlite>| {
            sql::push_trace_filters(
                qb,
                q,
                "json_extract(document, '$.context.trace_context.id_')",
            );
        };
        let order = if q.ascending {
            "start_timestamp ASC, trace_tag ASC, rowid ASC"
        } else {
            "start_timestamp DESC, trace_tag ASC, rowid DESC"
        };
        let (rows, total) = self
            .page_of("traces", filters, order, q.limit, q.offset)
            .await?;
        Ok(Page {
            items: self.assemble_traces(&rows).await?,
            total,
        })
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (id, user_name, key_hash, metadata, created_at, enabled) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&key.id)
            .bind(&key.user)
            .bind(&key.key_hash)
            .bind(key.metadata.to_string())
            .bind(&key.created_at)
            .bind(i64::from(key.enabled))
            .execute(&self.pool)
            .await
            .map_err(|e| sql::conflict(e, "an API key with this key_hash"))?;
        Ok(())
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::api_key).transpose()
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::api_key).transpose()
    }

    async fn list_api_keys(&self, limit: Option<u64>, offset: u64) -> Result<Page<ApiKey>> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        let mut select = QueryBuilder::new("SELECT * FROM api_keys ORDER BY rowid");
        limit_clause(&mut select, limit, offset);
        let rows = select.build().fetch_all(&self.pool).await?;
        Ok(Page {
            items: rows.iter().map(sql::api_key).collect::<Result<_>>()?,
            total: total as u64,
        })
    }

    async fn update_api_key(&self, key: &ApiKey) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET user_name = ?, metadata = ?, enabled = ? WHERE id = ?",
        )
        .bind(&key.user)
        .bind(key.metadata.to_string())
        .bind(i64::from(key.enabled))
        .bind(&key.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_token(&self, token: &Token) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, user_name, token, expiry, metadata) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.user)
        .bind(&token.token)
        .bind(&token.expiry)
        .bind(token.metadata.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| sql::conflict(e, "this token"))?;
        Ok(())
    }

    async fn token(&self, token: &str) -> Result<Option<Token>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE token = ?")
            .bind(token)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::token).transpose()
    }

    async fn insert_trigger_type(&self, t: &TriggerType) -> Result<()> {
        self.check_ref_free("trigger_types", &t.reference, "trigger type")
            .await?;
        sqlx::query(
            "INSERT INTO trigger_types (id, ref, pack, name, description, payload_schema, parameters_schema, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.reference)
        .bind(&t.pack)
        .bind(&t.name)
        .bind(&t.description)
        .bind(t.payload_schema.to_string())
        .bind(t.parameters_schema.to_string())
        .bind(t.tags.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| sql::conflict(e, "this trigger type"))?;
        Ok(())
    }

    async fn trigger_type(&self, ref_or_id: &str) -> Result<Option<TriggerType>> {
        let row = sqlx::query("SELECT * FROM trigger_types WHERE ref = ? OR id = ?")
            .bind(ref_or_id)
            .bind(ref_or_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::trigger_type).transpose()
    }

    async fn list_trigger_types(&self) -> Result<Vec<TriggerType>> {
        let rows = sqlx::query("SELECT * FROM trigger_types ORDER BY ref")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::trigger_type).collect()
    }

    async fn update_trigger_type(&self, t: &TriggerType) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE trigger_types SET ref = ?, pack = ?, name = ?, description = ?, payload_schema = ?, parameters_schema = ?, tags = ? WHERE id = ?",
        )
        .bind(&t.reference)
        .bind(&t.pack)
        .bind(&t.name)
        .bind(&t.description)
        .bind(t.payload_schema.to_string())
        .bind(t.parameters_schema.to_string())
        .bind(t.tags.to_string())
        .bind(&t.id)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::conflict(e, "a trigger type with this ref"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_trigger_type(&self, id: &str) -> Result<bool> {
        self.delete_by_id("trigger_types", id).await
    }

    async fn insert_trigger(&self, t: &StoredTrigger) -> Result<()> {
        self.check_ref_free("triggers", &t.reference, "trigger")
            .await?;
        sqlx::query(
            "INSERT INTO triggers (id, ref, pack, name, trigger_type, parameters, description) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.reference)
        .bind(&t.pack)
        .bind(&t.name)
        .bind(&t.trigger_type)
        .bind(t.parameters.to_string())
        .bind(&t.description)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::conflict(e, "this trigger"))?;
        Ok(())
    }

    async fn trigger(&self, ref_or_id: &str) -> Result<Option<StoredTrigger>> {
        let row = sqlx::query("SELECT * FROM triggers WHERE ref = ? OR id = ?")
            .bind(ref_or_id)
            .bind(ref_or_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::stored_trigger).transpose()
    }

    async fn list_triggers(&self) -> Result<Vec<StoredTrigger>> {
        let rows = sqlx::query("SELECT * FROM triggers ORDER BY ref")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::stored_trigger).collect()
    }

    async fn update_trigger(&self, t: &StoredTrigger) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE triggers SET ref = ?, pack = ?, name = ?, trigger_type = ?, parameters = ?, description = ? WHERE id = ?",
        )
        .bind(&t.reference)
        .bind(&t.pack)
        .bind(&t.name)
        .bind(&t.trigger_type)
        .bind(t.parameters.to_string())
        .bind(&t.description)
        .bind(&t.id)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::conflict(e, "a trigger with this ref"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_trigger(&self, id: &str) -> Result<bool> {
        self.delete_by_id("triggers", id).await
    }

    async fn insert_rule(&self, rule: &StoredRule) -> Result<()> {
        self.check_ref_free("rules", &rule.reference, "Rule")
            .await?;
        sqlx::query("INSERT INTO rules (id, ref, pack, name, document, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(&rule.id)
            .bind(&rule.reference)
            .bind(&rule.pack)
            .bind(&rule.name)
            .bind(rule.document.to_string())
            .bind(&rule.created_by)
            .bind(crate::ids::now())
            .execute(&self.pool)
            .await
            .map_err(|e| sql::conflict(e, "a rule with this ref"))?;
        Ok(())
    }

    async fn list_rules(&self) -> Result<Vec<StoredRule>> {
        let rows = sqlx::query("SELECT * FROM rules ORDER BY pack, name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::stored_rule).collect()
    }

    async fn update_rule(&self, rule: &StoredRule) -> Result<bool> {
        let done =
            sqlx::query("UPDATE rules SET ref = ?, pack = ?, name = ?, document = ? WHERE id = ?")
                .bind(&rule.reference)
                .bind(&rule.pack)
                .bind(&rule.name)
                .bind(rule.document.to_string())
                .bind(&rule.id)
                .execute(&self.pool)
                .await
                .map_err(|e| sql::conflict(e, "a rule with this ref"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_rule(&self, id: &str) -> Result<bool> {
        self.delete_by_id("rules", id).await
    }

    fn datastore_key(&self) -> Result<Arc<DatastoreKey>> {
        self.datastore_key.get()
    }

    async fn kv_get(&self, name: &str) -> Result<Option<KvPair>> {
        let row = sqlx::query(&format!("SELECT * FROM kv WHERE name = ? AND {KV_LIVE}"))
            .bind(name)
            .bind(crate::ids::now())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::kv_pair).transpose()
    }

    async fn kv_all(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(&format!(
            "SELECT name, value FROM kv WHERE {KV_LIVE} ORDER BY name"
        ))
        .bind(crate::ids::now())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn kv_list(&self, prefix: &str, limit: Option<u64>, offset: u64) -> Result<Page<KvPair>> {
        let now = crate::ids::now();
        let (rows, total) = self
            .page_of(
                "kv",
                |qb| {
                    qb.push(" WHERE (expire_at IS NULL OR expire_at > ")
                        .push_bind(now.clone())
                        .push(") AND substr(name, 1, length(")
                        .push_bind(prefix.to_owned())
                        .push(")) = ")
                        .push_bind(prefix.to_owned());
                },
                "name",
                limit,
                offset,
            )
            .await?;
        let items = rows.iter().map(sql::kv_pair).collect::<Result<_>>()?;
        Ok(Page { items, total })
    }

    async fn kv_put(
        &self,
        name: &str,
        value: KvValue<'_>,
        ttl: Option<Duration>,
    ) -> Result<KvPair> {
        let expire_timestamp = ttl.map(sql::expires_after);
        // What to store, when it does not depend on the current pair (and so is worked out
        // before the transaction, which a failure would otherwise abandon).
        let fixed = sql::fixed_kv(&self.datastore_key, name, value)?;
        let mut tx = WriteTx::begin(&self.pool).await?;
        let (stored, secret) = match (fixed, value) {
            (Some(fixed), _) => fixed,
            (None, KvValue::KeepSecrecy(plaintext)) => {
                let current = live_kv(&mut tx, name).await?;
                sql::kept_secrecy(&self.datastore_key, current.as_ref(), plaintext)?
            }
            (None, _) => unreachable!("only KeepSecrecy depends on the current pair"),
        };
        upsert_kv(name, &stored, secret, expire_timestamp.as_deref())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        self.purge_expired_kv().await;
        Ok(KvPair {
            name: name.to_owned(),
            value: stored,
            secret,
            expire_timestamp,
        })
    }

    async fn kv_delete(&self, name: &str) -> Result<bool> {
        // An expired pair is deleted too, but did not exist for the caller.
        let live: Option<bool> = sqlx::query_scalar(&format!(
            "DELETE FROM kv WHERE name = ? RETURNING {KV_LIVE}"
        ))
        .bind(name)
        .bind(crate::ids::now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(live == Some(true))
    }

    async fn kv_increment(&self, name: &str, delta: i64) -> Result<i64> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let current = live_kv(&mut tx, name).await?;
        let expire_at = current.as_ref().and_then(|p| p.expire_timestamp.clone());
        let next = match sql::incremented(name, current.as_ref(), delta) {
            Ok(next) => next,
            Err(refused) => {
                // Nothing written: committing ends the read and returns the connection.
                tx.commit().await?;
                return Err(refused);
            }
        };
        upsert_kv(name, &next.to_string(), false, expire_at.as_deref())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn purge(&self, what: Retained, before: &str, limit: u64) -> Result<u64> {
        let sql = match what {
            Retained::TriggerInstances => {
                "DELETE FROM trigger_instances WHERE id IN (SELECT id FROM trigger_instances \
                 WHERE occurrence_time < ? AND status NOT IN ('pending', 'processing') \
                 ORDER BY occurrence_time LIMIT ?)"
            }
            Retained::Traces => {
                "DELETE FROM traces WHERE id IN (SELECT t.id FROM traces t \
                 WHERE t.start_timestamp < ? AND NOT EXISTS \
                 (SELECT 1 FROM trigger_instances i WHERE i.trace_id = t.id) \
                 ORDER BY t.start_timestamp LIMIT ?)"
            }
            Retained::Enforcements => {
                "DELETE FROM rule_enforcements WHERE id IN (SELECT id FROM rule_enforcements \
                 WHERE enforced_at < ? ORDER BY enforced_at LIMIT ?)"
            }
            Retained::Executions => {
                "DELETE FROM executions WHERE id IN (SELECT id FROM executions \
                 WHERE end_timestamp < ? AND status IN \
                 ('succeeded', 'failed', 'timeout', 'canceled', 'abandoned') \
                 ORDER BY end_timestamp LIMIT ?)"
            }
        };
        // Through the writer thread, like every hot write: a pooled `BEGIN IMMEDIATE` would
        // wait in SQLite's busy handler, holding one of the pool's few connections, for as
        // long as the writer keeps the lock (which it does under load).
        let (before, limit) = (before.to_owned(), i64::try_from(limit).unwrap_or(i64::MAX));
        let done = self
            .write(move |tx| tx.execute(sql, rusqlite::params![before, limit]))
            .await?;
        Ok(done as u64)
    }

    async fn kv_compare_and_swap(
        &self,
        name: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let current = live_kv(&mut tx, name).await?;
        let swaps = sql::swaps(name, current.as_ref(), expected);
        if !matches!(swaps, Ok(true)) {
            // Nothing written (a refusal, or another value): committing ends the read and
            // returns the connection.
            tx.commit().await?;
            return swaps;
        }
        let expire_at = current.and_then(|pair| pair.expire_timestamp);
        upsert_kv(name, new, false, expire_at.as_deref())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The condition that a `kv` row has not expired; binds the current time.
const KV_LIVE: &str = "(expire_at IS NULL OR expire_at > ?)";
/// How many expired pairs one write purges at most.
const KV_PURGE_BATCH: i64 = 64;

/// Stores a pair, replacing the one under its name.
fn upsert_kv<'q>(
    name: &'q str,
    value: &'q str,
    secret: bool,
    expire_at: Option<&'q str>,
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    sqlx::query(
        "INSERT INTO kv (name, value, secret, expire_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, secret = excluded.secret, \
         expire_at = excluded.expire_at",
    )
    .bind(name)
    .bind(value)
    .bind(secret)
    .bind(expire_at)
}

/// The unexpired pair under `name`, read inside a write transaction.
async fn live_kv(tx: &mut WriteTx, name: &str) -> Result<Option<KvPair>> {
    let row = sqlx::query(&format!("SELECT * FROM kv WHERE name = ? AND {KV_LIVE}"))
        .bind(name)
        .bind(crate::ids::now())
        .fetch_optional(tx.conn())
        .await?;
    row.as_ref().map(sql::kv_pair).transpose()
}

impl SqliteStore {
    /// A conflict naming the holder's id when `reference` is taken in `table` (`kind` names
    /// the resource in the message).
    /// The executions a `SELECT * FROM` [`EXECUTIONS`] query finds.
    async fn executions_of<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Vec<Execution>> {
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(execution_row)
            .collect()
    }

    async fn check_ref_free(&self, table: &str, reference: &str, kind: &str) -> Result<()> {
        let existing: Option<String> =
            sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE ref = ?"))
                .bind(reference)
                .fetch_optional(&self.pool)
                .await?;
        match existing {
            Some(id) => Err(StorageError::Conflict {
                message: format!("{kind} {reference} already exists"),
                existing_id: Some(id),
            }),
            None => Ok(()),
        }
    }

    /// Deletes the row of `table` with this id; returns whether it existed.
    async fn delete_by_id(&self, table: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(&format!("DELETE FROM {table} WHERE id = ?"))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes up to [`KV_PURGE_BATCH`] expired pairs (reads never see them; this keeps them
    /// from piling up). Best effort: a failure is left to the next write.
    async fn purge_expired_kv(&self) {
        let purged = sqlx::query(
            "DELETE FROM kv WHERE rowid IN \
             (SELECT rowid FROM kv WHERE expire_at <= ? ORDER BY expire_at LIMIT ?)",
        )
        .bind(crate::ids::now())
        .bind(KV_PURGE_BATCH)
        .execute(&self.pool)
        .await;
        if let Err(e) = purged {
            tracing::debug!("purging expired datastore keys: {e}");
        }
    }
}

impl SqliteStore {
    /// One page of `table` and how many rows match in all: the same `filters` for both
    /// queries, then `order` and the page.
    async fn page_of(
        &self,
        table: &str,
        filters: impl Fn(&mut QueryBuilder<'_, Sqlite>),
        order: &str,
        limit: Option<u64>,
        offset: u64,
    ) -> Result<(Vec<SqliteRow>, u64)> {
        let mut count = QueryBuilder::new(format!("SELECT COUNT(*) FROM {table}"));
        filters(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let mut select = QueryBuilder::new(format!("SELECT * FROM {table}"));
        filters(&mut select);
        select.push(format!(" ORDER BY {order}"));
        limit_clause(&mut select, limit, offset);
        let rows = select.build().fetch_all(&self.pool).await?;
        Ok((rows, total as u64))
    }

    /// The traces of `rows`, with their trigger instances read in one query (a page of a
    /// thousand traces is one read, not a thousand).
    async fn assemble_traces(&self, rows: &[SqliteRow]) -> Result<Vec<Trace>> {
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let instances = sqlx::query(
            "SELECT trace_id, id, trigger_ref, updated_at FROM trigger_instances \
             WHERE trace_id IN (SELECT value FROM json_each(?)) ORDER BY rowid",
        )
        .bind(serde_json::Value::from(ids).to_string())
        .fetch_all(&self.pool)
        .await?;
        sql::traces(rows, &instances)
    }
}
