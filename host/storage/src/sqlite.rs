//! The SQLite backend: one file in the data directory, WAL with `synchronous=FULL`.
//!
//! With WAL and FULL, every commit is fsync'd before it returns: a transaction that committed
//! survives a process crash, an OS crash and a power loss. (NORMAL survives a process crash but
//! may lose the last commits on power loss; OFF may corrupt.) The cost, one fsync per commit,
//! is paid once per batch thanks to [`crate::ingest::Ingest`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
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
    writer: Arc<Mutex<rusqlite::Connection>>,
    /// Set by the background checkpoint when the WAL has grown past its limit
    /// ([`WAL_LIMIT_BYTES`] by default);
    /// the writer then starts it over before its next commit.
    restart_wal: Arc<AtomicBool>,
    /// The database file and the WAL limit, to open the writer connection again.
    path: Arc<(std::path::PathBuf, u64)>,
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
        let data_dir = path.parent().unwrap_or(Path::new("."));
        Ok(Self {
            pool,
            writer: Arc::new(Mutex::new(writer)),
            restart_wal,
            path: Arc::new((path.to_owned(), wal_limit_bytes)),
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
    // the same 5 s.
    writer.busy_handler(Some(|retries: i32| {
        std::thread::sleep(Duration::from_micros(100));
        retries < 50_000
    }))?;
    Ok(writer)
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
const INSERT_EXECUTION: &str = "INSERT INTO executions (id, action_ref, runner, status, start_timestamp, end_timestamp, user_name, rule_ref, trigger_instance_id, run_parameters, document) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
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

/// One transaction for the whole batch, with cached prepared statements.
fn commit_blocking(conn: &mut rusqlite::Connection, events: &[NewEvent]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut trace = tx.prepare_cached(
            "INSERT INTO traces (id, trace_tag, start_timestamp) VALUES (?1, ?2, ?3)",
        )?;
        let mut instance = tx.prepare_cached(
            "INSERT INTO trigger_instances (id, trigger_ref, trigger_type, payload, occurrence_time, status, trace_id, updated_at, depth) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5, ?8)",
        )?;
        for event in events {
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
    tx.commit()
}

fn insert_execution(
    e: &Execution,
) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments<'static>> {
    sqlx::query(INSERT_EXECUTION)
        .bind(e.id.clone())
        .bind(e.action_ref.clone())
        .bind(e.runner.clone())
        .bind(e.status.as_str())
        .bind(e.start_timestamp.clone())
        .bind(e.end_timestamp.clone())
        .bind(e.user.clone())
        .bind(e.rule_ref.clone())
        .bind(e.trigger_instance_id.clone())
        .bind(e.run_parameters.to_string())
        .bind(e.document.to_string())
}

fn limit_clause(qb: &mut QueryBuilder<'_, Sqlite>, limit: Option<u64>, offset: u64) {
    qb.push(" LIMIT ")
        .push_bind(limit.map_or(-1, |l| l as i64))
        .push(" OFFSET ")
        .push_bind(offset as i64);
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit_events(&self, events: &[NewEvent]) -> Result<()> {
        let writer = Arc::clone(&self.writer);
        let restart_wal = &self.restart_wal;
        let path = &self.path;
        let commit = move || {
            let mut conn = writer.lock().map_err(|_| {
                StorageError::Corrupt("the writer connection lock is poisoned".into())
            })?;
            if restart_wal.swap(false, Ordering::Relaxed) {
                // Copies the rest of the WAL, and the commit below, finding it all copied,
                // starts the WAL over. That is best effort: a reader still on old frames, or a
                // write through the pool in between (the engine, the executor, the API), leaves
                // the WAL as it is, and the next background checkpoint asks again. PASSIVE
                // never waits for locks (a RESTART checkpoint would hold ingest back until
                // every reader had finished), but this commit waits for the copy and its
                // fsyncs: what was written since the last background checkpoint.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!("WAL checkpoint before a restart failed: {e}");
                }
            }
            let outcome = commit_blocking(&mut conn, events);
            if outcome.is_err() {
                heal_writer(&mut conn, &path.0, path.1);
            }
            outcome.map_err(writer_error)
        };
        // The ingest writer calls this on its own single-threaded runtime, where blocking is
        // the point. Anywhere else, tell a multi-threaded runtime that this task blocks.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(commit),
            _ => commit(),
        }
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
        let mut tx = WriteTx::begin(&self.pool).await?;
        let now = crate::ids::now();
        for done in finished {
            // Executions named by an enforcement that was already stored: not requested again.
            let mut skipped: Vec<&str> = Vec::new();
            for e in &done.enforcements {
                let inserted = sqlx::query(INSERT_ENFORCEMENT)
                    .bind(&e.id)
                    .bind(&e.trigger_instance_id)
                    .bind(&e.execution_id)
                    .bind(&e.failure_reason)
                    .bind(&e.rule_ref)
                    .bind(&e.rule_id)
                    .bind(&e.rule_uid)
                    .bind(&e.enforced_at)
                    .bind(e.status.as_str())
                    .execute(tx.conn())
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    tracing::warn!(
                        trigger_instance = %e.trigger_instance_id,
                        rule = %e.rule_ref,
                        "the rule was already enforced for this trigger instance; the second evaluation is not recorded"
                    );
                    skipped.extend(e.execution_id.as_deref());
                }
            }
            for execution in &done.executions {
                if skipped.contains(&execution.id.as_str()) {
                    continue;
                }
                insert_execution(execution).execute(tx.conn()).await?;
            }
            sqlx::query(FINISH_INSTANCE)
                .bind(done.status.as_str())
                .bind(&now)
                .bind(&done.id)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<()> {
        insert_execution(execution)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::conflict(e, "execution"))?;
        Ok(())
    }

    async fn execution(&self, id: &str) -> Result<Option<Execution>> {
        sqlx::query("SELECT * FROM executions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(sql::execution)
            .transpose()
    }

    async fn list_executions(&self, q: &ExecutionQuery) -> Result<Page<Execution>> {
        let (rows, total) = self
            .page_of(
                "executions",
                |qb| sql::push_execution_filters(qb, q),
                &sql::execution_order(q.ascending, "rowid"),
                q.limit,
                q.offset,
            )
            .await?;
        Ok(Page {
            items: rows.iter().map(sql::execution).collect::<Result<_>>()?,
            total,
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
        let mut tx = WriteTx::begin(&self.pool).await?;
        let mut replaced = Vec::with_capacity(executions.len());
        for e in executions {
            let mut qb = QueryBuilder::<Sqlite>::new("UPDATE executions SET status = ");
            qb.push_bind(e.status.as_str())
                .push(", end_timestamp = ")
                .push_bind(e.end_timestamp.clone())
                .push(", document = ")
                .push_bind(e.document.to_string())
                .push(" WHERE id = ")
                .push_bind(e.id.clone());
            if !only_from.is_empty() {
                qb.push(" AND status IN (");
                let mut list = qb.separated(", ");
                for status in only_from {
                    list.push_bind(status.as_str());
                }
                list.push_unseparated(")");
            }
            let done = qb.build().execute(tx.conn()).await?;
            replaced.push(done.rows_affected() > 0);
        }
        tx.commit().await?;
        Ok(replaced)
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
        self.assemble_trace(&row).await.map(Some)
    }

    async fn list_traces(&self, q: &TraceQuery) -> Result<Page<Trace>> {
        let filters = |qb: &mut QueryBuilder<'_, Sqlite>| {
            sql::push_filters(qb, &[("trace_tag", &q.trace_tag)], &[], ("", &None, &None));
            if let Some(ti) = &q.trigger_instance {
                qb.push(" AND id IN (SELECT trace_id FROM trigger_instances WHERE id = ")
                    .push_bind(ti.clone())
                    .push(")");
            }
        };
        let (rows, total) = self
            .page_of(
                "traces",
                filters,
                "start_timestamp DESC, trace_tag ASC, rowid DESC",
                q.limit,
                q.offset,
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(self.assemble_trace(row).await?);
        }
        Ok(Page { items, total })
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
        let existing = self.trigger_type(&t.reference).await?.map(|e| e.id);
        if existing.is_some() {
            return Err(StorageError::Conflict {
                message: format!("trigger type {} already exists", t.reference),
                existing_id: existing,
            });
        }
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
        let done = sqlx::query("DELETE FROM trigger_types WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_rule(&self, rule: &StoredRule) -> Result<()> {
        let existing: Option<String> = sqlx::query_scalar("SELECT id FROM rules WHERE ref = ?")
            .bind(&rule.reference)
            .fetch_optional(&self.pool)
            .await?;
        if existing.is_some() {
            return Err(StorageError::Conflict {
                message: format!("Rule {} already exists", rule.reference),
                existing_id: existing,
            });
        }
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
        let done = sqlx::query("DELETE FROM rules WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
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
        let mut tx = WriteTx::begin(&self.pool).await?;
        let done = sqlx::query(sql)
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
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

    async fn assemble_trace(&self, row: &SqliteRow) -> Result<Trace> {
        let id: String = row.try_get("id")?;
        let instances = sqlx::query("SELECT id, trigger_ref, updated_at FROM trigger_instances WHERE trace_id = ? ORDER BY rowid")
            .bind(&id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("trigger_ref")?, r.try_get("updated_at")?)))
            .collect::<Result<_>>()?;
        Ok(Trace {
            id,
            trace_tag: row.try_get("trace_tag")?,
            start_timestamp: row.try_get("start_timestamp")?,
            trigger_instances: instances,
        })
    }
}
