//! The PostgreSQL backend: one database shared by several nodes.
//!
//! Every node accepts webhooks and serves the whole API; the work is claimed rather than
//! split: a rules engine claims pending trigger instances and an executor claims requested
//! executions with `FOR UPDATE SKIP LOCKED`, under this node's lease ([`Cluster`]), which
//! [`Store::renew_leases`] extends. When a node dies its leases expire: another node claims its
//! trigger instances again ([`Store::pending_after`]) and settles its executions
//! ([`Store::orphaned_executions`]). Changes every node must see ([`Change`]) travel by
//! `LISTEN`/`NOTIFY` on the channel [`CHANNEL`].
//!
//! Every connection runs with `synchronous_commit = on`, so a commit has reached the server's
//! WAL on disk (and its synchronous standbys, if any are configured) before it returns.
//! The migrations (`migrations/postgres`) run when a node connects, under sqlx's advisory lock,
//! so nodes may start together.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, Postgres, QueryBuilder, Row};
use tokio::sync::broadcast;

use crate::crypto::DatastoreKey;
use crate::models::*;
use crate::sql::{self, KeySource};
use crate::status::{ExecutionStatus, InstanceStatus};
use crate::{Result, StorageError, Store};

/// The `LISTEN`/`NOTIFY` channel of [`Change`]s. Channels are per database, not per schema:
/// deployments in different schemas of one database see each other's changes, which costs
/// them a reload or a wake-up now and then and nothing more (a cancel names a unique id).
pub const CHANNEL: &str = "stormhook";

/// The first key of the transaction-level advisory lock a purge takes
/// (`pg_try_advisory_xact_lock(PURGE_LOCK, hashtext(current_schema()))`): one node at a time
/// purges a schema. (The second key keeps deployments in different schemas of one database
/// apart.) Holding it pauses retention on every node.
pub const PURGE_LOCK: i32 = 0x5354_5052; // "STPR"

/// How long a new connection to the database may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free pooled connection (or for a new one) before it fails as
/// unavailable: a dead database gives errors, not hangs.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How many [`Change`]s a slow receiver may fall behind before it misses some.
const CHANGES_CAPACITY: usize = 1024;
/// How many expired datastore pairs one write purges at most.
const KV_PURGE_BATCH: i64 = 64;

/// How a node connects: its name among the nodes, its lease, its datastore key.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// This node's id: the owner recorded on the work it claims. It must differ between the
    /// nodes sharing a database, and should be new at every start (see [`Cluster::node_id`]).
    pub node_id: String,
    /// How long a claim lasts unless renewed (default 15 s). Every node renews its claims
    /// every third of it; a dead node's work is taken over this long after its last renewal.
    pub lease: Duration,
    /// The file of the key that encrypts datastore secrets. Every node sharing the database
    /// must use the same key: a secret written with one key cannot be read with another.
    pub datastore_key: PathBuf,
    /// Whether a missing key file is generated on first use (`true`, the default: a node's
    /// own default file) or is an error (a file the operator named).
    pub create_key: bool,
    /// The size of the connection pool (default 10), the change listener's connection
    /// included (it keeps one of them).
    pub max_connections: u32,
}

impl PgOptions {
    /// Options for node `node_id` whose datastore key is in `datastore_key` (generated on
    /// first use if missing), with a 15 s lease and 10 connections.
    pub fn new(node_id: impl Into<String>, datastore_key: impl Into<PathBuf>) -> Self {
        Self {
            node_id: node_id.into(),
            lease: Duration::from_secs(15),
            datastore_key: datastore_key.into(),
            create_key: true,
            max_connections: 10,
        }
    }
}

/// The PostgreSQL store. Cheap to clone; the clones share the pool and the change listener,
/// which stops when the last clone is dropped or [`PgStore::close`] is called.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// This node's id and lease.
    cluster: Cluster,
    /// The lease in seconds, as bound into `make_interval(secs => ..)`.
    lease_secs: f64,
    /// When this store connected, by the database's clock (seconds since the epoch): claims
    /// made since are this process's, even when an operator reuses a node id across restarts.
    started_epoch: f64,
    /// Where the listener task hands the changes it receives; [`Store::changes`] subscribes.
    changes: broadcast::Sender<Change>,
    /// The listener task, aborted when the last clone of the store goes.
    listener: Arc<ListenerTask>,
    /// Where the datastore key comes from, and the key once read.
    datastore_key: Arc<KeySource>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Owns the listener task: aborts it when dropped.
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`; an
    /// `options=-c%20search_path%3Dschema` parameter puts the tables in a schema of their
    /// own), applies the migrations, and starts listening for [`Change`]s.
    ///
    /// The migrations run on a connection of their own, under the advisory lock sqlx's
    /// PostgreSQL migrator takes (`pg_advisory_lock`, keyed by the database name, before it
    /// even creates its `_sqlx_migrations` table; `sqlx-postgres` 0.8 `migrate.rs`), so nodes
    /// starting at once apply each migration once: the others wait, then find it applied.
    /// That connection is closed afterwards, so a failed migration cannot leave the lock held.
    ///
    /// # Errors
    ///
    /// The URL is invalid, the database cannot be reached (within a few seconds), the
    /// migrations fail, or `LISTEN` fails.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(url)?
            // Explicit, whatever the server's or the role's default: a commit returns only
            // once it is durable.
            .options([("synchronous_commit", "on")]);
        if connect.get_application_name().is_none() {
            // `pg_stat_activity` then shows which node holds which connection.
            connect = connect.application_name(&format!("stormhook {}", options.node_id));
        }
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect.connect())
            .await
            .map_err(|_| {
                StorageError::Unavailable("connecting to the database timed out".into())
            })??;
        sqlx::migrate!("migrations/postgres").run(&mut conn).await?;
        let started_epoch: f64 = sqlx::query_scalar("SELECT extract(epoch FROM now())::float8")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(connect)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        let task = tokio::spawn(listen(pool.clone(), listener, changes.clone()));
        Ok(Self {
            pool,
            lease_secs: options.lease.as_secs_f64(),
            started_epoch,
            cluster: Cluster {
                node_id: options.node_id,
                lease: options.lease,
            },
            changes,
            listener: Arc::new(ListenerTask(task)),
            datastore_key: Arc::new(KeySource::lazy(options.datastore_key, options.create_key)),
        })
    }

    /// Encrypts datastore secrets with the key in `path` (StackStorm's key file format)
    /// instead of the one in [`PgOptions::datastore_key`]. The file is read now, and never
    /// created. Every node sharing the database must use the same key.
    ///
    /// # Errors
    ///
    /// The file cannot be read or holds no usable key.
    pub fn with_datastore_key(mut self, path: &Path) -> Result<Self> {
        self.datastore_key = Arc::new(KeySource::read_now(path)?);
        Ok(self)
    }

    /// This node's id among the nodes sharing the database.
    pub fn node_id(&self) -> &str {
        &self.cluster.node_id
    }

    /// Closes the pool (waiting for connections in use to come back) and stops the change
    /// listener. Calls made afterwards fail.
    pub async fn close(&self) {
        self.listener.0.abort();
        self.pool.close().await;
    }
}

/// Receives the notifications of [`CHANNEL`] and hands them to the store's subscribers, until
/// the pool closes. Notifications sent while the listener was disconnected are lost, so after
/// a reconnection every subscriber is told to refresh what it caches (rules, credentials) and
/// to look for work; a missed cancel is caught by the owner's next [`Store::renew_leases`].
///
/// `PgListener` reconnects by itself only after some I/O errors (end of stream, broken pipe,
/// abort, timeout); after others (a reset connection, the server's `FATAL` when it ends the
/// session) it would keep its dead connection and fail forever. So on any error the listener
/// is replaced.
async fn listen(pool: PgPool, mut listener: PgListener, changes: broadcast::Sender<Change>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match Change::decode(notification.payload()) {
                Some(change) => {
                    // No receiver is not an error: nothing is interested yet.
                    let _ = changes.send(change);
                }
                None => tracing::debug!(
                    payload = notification.payload(),
                    "ignoring an unknown notification on channel {CHANNEL}"
                ),
            },
            Ok(None) => {
                tracing::warn!("the change listener lost its connection and reconnected");
                resync(&changes);
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!("the change listener's connection failed ({e}); connecting again");
                let Some(fresh) = reconnect(&pool).await else {
                    return;
                };
                listener = fresh;
                tracing::info!("the change listener is connected again");
                resync(&changes);
            }
        }
    }
}

/// A new listener on [`CHANNEL`], trying every second; `None` once the pool is closed.
async fn reconnect(pool: &PgPool) -> Option<PgListener> {
    let mut failing = false;
    loop {
        if pool.is_closed() {
            return None;
        }
        let listener = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(listener) => return Some(listener),
            Err(e) if !failing => {
                failing = true;
                tracing::error!(
                    "the change listener cannot reach the database (retrying every second; changes from other nodes are late until it can): {e}"
                );
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What a subscriber is told after the listener missed notifications.
fn resync(changes: &broadcast::Sender<Change>) {
    for change in [Change::Rules, Change::Credentials, Change::Work] {
        let _ = changes.send(change);
    }
}

/// What a status write does to an execution's claim.
#[derive(Clone, Copy)]
enum Claim {
    /// Moved to `scheduled` or `running`: this node holds it, under its lease.
    Take,
    /// Moved to `canceling`: the node that runs it keeps it until the run stops.
    Keep,
    /// Any other status (completed, or back to `requested`): nobody holds it.
    Release,
}

impl Claim {
    fn of(status: ExecutionStatus) -> Self {
        match status {
            ExecutionStatus::Scheduled | ExecutionStatus::Running => Self::Take,
            ExecutionStatus::Canceling => Self::Keep,
            _ => Self::Release,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Take => "take",
            Self::Keep => "keep",
            Self::Release => "release",
        }
    }
}

/// Replaces an execution's status, end and document when its status is one of `$8` (any when
/// empty), and takes, keeps or releases the claim (`$4`, see [`Claim`]). Only the node that
/// holds an execution (or anyone, when nobody does) may move it out of its claim: a node whose
/// lease lapsed (cut off from the database longer than the lease) cannot overwrite what the
/// node that took the execution over decided; its late result is dropped.
const UPDATE_EXECUTION: &str = "UPDATE executions SET status = $1, end_timestamp = $2, document = $3, \
     owner = CASE $4 WHEN 'take' THEN $5 WHEN 'release' THEN NULL ELSE owner END, \
     lease_until = CASE $4 WHEN 'take' THEN now() + make_interval(secs => $6) \
                           WHEN 'release' THEN NULL ELSE lease_until END \
     WHERE id = $7 AND (cardinality($8::text[]) = 0 OR status = ANY($8)) \
     AND ($4 <> 'release' OR owner IS NULL OR owner = $5 OR owner = $5 || '#reaper')";

const INSERT_EXECUTIONS: &str = "INSERT INTO executions (id, action_ref, runner, status, start_timestamp, end_timestamp, user_name, rule_ref, trigger_instance_id, run_parameters, document, due_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])";

/// Queues [`Change::Work`] in the current transaction: it is sent when (and if) it commits.
const NOTIFY_WORK: &str = "SELECT pg_notify('stormhook', 'work')";

impl PgStore {
    /// Deletes the row of `table` with this id; returns whether it existed.
    async fn delete_by_id(&self, table: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Inserts executions in one statement, in their order.
    async fn insert_executions(conn: &mut PgConnection, executions: &[&Execution]) -> Result<()> {
        let column = |f: fn(&Execution) -> Option<String>| -> Vec<Option<String>> {
            executions.iter().map(|e| f(e)).collect()
        };
        sqlx::query(INSERT_EXECUTIONS)
            .bind(column(|e| Some(e.id.clone())))
            .bind(column(|e| Some(e.action_ref.clone())))
            .bind(column(|e| Some(e.runner.clone())))
            .bind(column(|e| Some(e.status.as_str().to_owned())))
            .bind(column(|e| Some(e.start_timestamp.clone())))
            .bind(column(|e| e.end_timestamp.clone()))
            .bind(column(|e| e.user.clone()))
            .bind(column(|e| e.rule_ref.clone()))
            .bind(column(|e| e.trigger_instance_id.clone()))
            .bind(column(|e| Some(e.run_parameters.to_string())))
            .bind(column(|e| Some(e.document.to_string())))
            .bind(column(|e| e.due_at.clone()))
            .execute(conn)
            .await
            .map_err(|e| sql::conflict(e, "execution"))?;
        Ok(())
    }

    /// [`UPDATE_EXECUTION`] for one execution; whether it was replaced.
    async fn update_one(
        &self,
        conn: &mut PgConnection,
        e: &Execution,
        only_from: &[&str],
    ) -> Result<bool> {
        let done = sqlx::query(UPDATE_EXECUTION)
            .bind(e.status.as_str())
            .bind(&e.end_timestamp)
            .bind(e.document.to_string())
            .bind(Claim::of(e.status).as_str())
            .bind(&self.cluster.node_id)
            .bind(self.lease_secs)
            .bind(&e.id)
            .bind(only_from)
            .execute(conn)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Announces `change` when `changed` (a write committed and changed something); returns
    /// `changed`.
    async fn announce_if(&self, changed: bool, change: Change) -> bool {
        if changed {
            self.announce(change).await;
        }
        changed
    }

    /// Announces `change` after a write committed; a failure is logged, never the write's.
    async fn announce(&self, change: Change) {
        if let Err(e) = self.publish(change.clone()).await {
            tracing::warn!(
                change = change.encode(),
                "cannot notify the other nodes (they catch up by polling): {e}"
            );
        }
    }

    /// The error of an insert into `table` that failed: when a unique key is taken and a
    /// record with the ref `reference` exists, a conflict `<kind> <reference> already exists`
    /// with its id (the API answers with it); any other unique violation as "`what` already
    /// exists"; any other error as it is.
    async fn keyed_conflict(
        &self,
        err: sqlx::Error,
        table: &str,
        reference: &str,
        kind: &str,
        what: &str,
    ) -> StorageError {
        if !sql::is_unique_violation(&err) {
            return err.into();
        }
        let existing = sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE ref = $1"))
            .bind(reference)
            .fetch_optional(&self.pool)
            .await;
        match existing {
            Ok(Some(id)) => StorageError::Conflict {
                message: format!("{kind} {reference} already exists"),
                existing_id: Some(id),
            },
            Ok(None) => sql::conflict(err, what),
            Err(e) => e.into(),
        }
    }

    /// One page of `table` and how many rows match in all: the same `filters` for both
    /// queries, then `order` and the page.
    async fn page_of(
        &self,
        table: &str,
        filters: impl Fn(&mut QueryBuilder<'_, Postgres>),
        order: &str,
        limit: Option<u64>,
        offset: u64,
    ) -> Result<(Vec<PgRow>, u64)> {
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

    /// Traces from their rows, each with its trigger instances (one query for all).
    async fn assemble_traces(&self, rows: &[PgRow]) -> Result<Vec<Trace>> {
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let instances = sqlx::query(
            "SELECT trace_id, id, trigger_ref, updated_at FROM trigger_instances \
             WHERE trace_id = ANY($1) ORDER BY seq",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        sql::traces(rows, &instances)
    }

    /// Deletes up to [`KV_PURGE_BATCH`] expired pairs (reads never see them; this keeps them
    /// from piling up). Best effort: a failure is left to the next write.
    async fn purge_expired_kv(&self) {
        let purged = sqlx::query(
            "DELETE FROM kv WHERE name IN (SELECT name FROM kv WHERE expire_at <= $1 \
             ORDER BY expire_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(crate::ids::now())
        .bind(KV_PURGE_BATCH)
        .execute(&self.pool)
        .await;
        if let Err(e) = purged {
            tracing::debug!("purging expired datastore keys: {e}");
        }
    }

    /// The pair under `name`, locked until the transaction ends (so an increment or a
    /// compare-and-swap cannot lose a concurrent one), and whether it is unexpired. A missing
    /// pair is inserted as an expired placeholder first, so that concurrent first writes of
    /// one name queue on its row too; the caller rolls back when it writes nothing, which
    /// removes the placeholder.
    async fn lock_kv(conn: &mut PgConnection, name: &str) -> Result<Option<KvPair>> {
        loop {
            sqlx::query(
                "INSERT INTO kv (name, value, secret, expire_at) VALUES ($1, '', false, '') \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .execute(&mut *conn)
            .await?;
            let row = sqlx::query("SELECT * FROM kv WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?;
            // None: the pair was there, expired, and a purge or a delete took it between the
            // two statements. Insert the placeholder again.
            if let Some(row) = row {
                let pair = sql::kv_pair(&row)?;
                return Ok(sql::is_live(pair.expire_timestamp.as_deref()).then_some(pair));
            }
        }
    }

    /// Replaces the (locked) pair under `name`.
    async fn write_kv(
        conn: &mut PgConnection,
        name: &str,
        value: &str,
        secret: bool,
        expire_at: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE kv SET value = $2, secret = $3, expire_at = $4 WHERE name = $1")
            .bind(name)
            .bind(value)
            .bind(secret)
            .bind(expire_at)
            .execute(conn)
            .await?;
        Ok(())
    }
}

fn limit_clause(qb: &mut QueryBuilder<'_, Postgres>, limit: Option<u64>, offset: u64) {
    // `LIMIT NULL` is no limit.
    qb.push(" LIMIT ")
        .push_bind(limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)))
        .push(" OFFSET ")
        .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
}

#[async_trait]
impl Store for PgStore {
    async fn commit_events(&self, events: &[NewEvent]) -> Result<Vec<Committed>> {
        // One multi-row insert per table, whatever the batch size: arrays bound as whole
        // values (`UNNEST`), so the statements are the same text every time (prepared once
        // per connection) and never run into the limit on bind parameters.
        let deliveries = events.iter().filter(|e| e.delivery.is_some()).count();
        if deliveries > 0 {
            // Expired delivery ids, at least as many as this batch may add, in a statement of
            // its own: it takes only rows no one holds (SKIP LOCKED) and holds them only for
            // itself, so it can never wait in a cycle with another node's claims.
            sqlx::query(
                "DELETE FROM deliveries WHERE key IN (SELECT key FROM deliveries \
                 WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(crate::ids::now())
            .bind(DELIVERY_PURGE_BATCH.max(2 * deliveries as i64))
            .execute(&self.pool)
            .await?;
        }
        let mut tx = self.pool.begin().await?;
        let outcomes = if deliveries > 0 {
            claim_deliveries(&mut tx, events).await?
        } else {
            vec![Committed::Stored; events.len()]
        };
        let stored: Vec<&NewEvent> = events
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == Committed::Stored)
            .map(|(e, _)| e)
            .collect();
        let events = stored.as_slice();
        let instances = || events.iter().flat_map(|e| &e.instances);
        sqlx::query(
            "INSERT INTO traces (id, trace_tag, start_timestamp) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) ON CONFLICT (id) DO NOTHING",
        )
        .bind(
            events
                .iter()
                .map(|e| e.trace.id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.trace.trace_tag.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.trace.start_timestamp.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO trigger_instances (id, trigger_ref, trigger_type, payload, occurrence_time, status, trace_id, updated_at, depth) \
             SELECT id, trigger_ref, trigger_type, payload, occurrence_time, status, trace_id, occurrence_time, depth \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[]) \
             AS i (id, trigger_ref, trigger_type, payload, occurrence_time, status, trace_id, depth)",
        )
        .bind(instances().map(|i| i.id.as_str()).collect::<Vec<_>>())
        .bind(instances().map(|i| i.trigger.as_str()).collect::<Vec<_>>())
        .bind(instances().map(|i| i.trigger_type.as_deref()).collect::<Vec<_>>())
        .bind(instances().map(|i| i.payload.as_str()).collect::<Vec<_>>())
        .bind(instances().map(|i| i.occurrence_time.as_str()).collect::<Vec<_>>())
        .bind(instances().map(|i| i.status.as_str()).collect::<Vec<_>>())
        .bind(instances().map(|i| i.trace_id.as_deref()).collect::<Vec<_>>())
        .bind(instances().map(|i| i64::from(i.depth)).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        if instances().next().is_some() {
            sqlx::query(NOTIFY_WORK).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn trigger_instance(&self, id: &str) -> Result<Option<TriggerInstance>> {
        let row = sqlx::query("SELECT * FROM trigger_instances WHERE id = $1")
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
                "occurrence_time DESC, trigger_ref ASC, seq DESC",
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
        // A status set from outside the rules engine's claim is nobody's claim: an instance
        // set to `processing` this way can be claimed at once.
        let done = sqlx::query(
            "UPDATE trigger_instances SET status = $1, updated_at = $2, owner = NULL, \
             lease_until = NULL WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(crate::ids::now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn pending_after(
        &self,
        _after: i64,
        limit: u64,
    ) -> Result<Vec<(i64, std::result::Result<TriggerInstance, Unreadable>)>> {
        // Claims: pending instances, and those in `processing` whose claim lapsed (their node
        // died, or it never had one), in insertion order. SKIP LOCKED passes over the rows
        // another node is claiming right now; a row another node claimed since this
        // statement's snapshot is checked again on its new version and left out.
        let rows = sqlx::query(
            "WITH claimable AS ( \
                 SELECT id FROM trigger_instances \
                 WHERE status = 'pending' OR (status = 'processing' \
                       AND (lease_until IS NULL OR lease_until < now())) \
                 ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE trigger_instances t SET status = 'processing', owner = $1, \
                    lease_until = now() + make_interval(secs => $2) \
             FROM claimable WHERE t.id = claimable.id RETURNING t.*",
        )
        .bind(&self.cluster.node_id)
        .bind(self.lease_secs)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(sql::queued_instance)
            .collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|(seq, _)| *seq);
        Ok(claimed)
    }

    async fn requeue_processing(&self) -> Result<u64> {
        // Other nodes' claims are live; lapsed ones are claimed again by `pending_after`.
        Ok(0)
    }

    async fn finish_trigger_instances(&self, finished: &[FinishedInstance]) -> Result<()> {
        let enforcements: Vec<&RuleEnforcement> =
            finished.iter().flat_map(|f| &f.enforcements).collect();
        let column = |f: fn(&RuleEnforcement) -> Option<&str>| -> Vec<Option<&str>> {
            enforcements.iter().map(|e| f(e)).collect()
        };
        let mut tx = self.pool.begin().await?;
        // One per (trigger instance, rule): those whose key is taken (an earlier evaluation
        // of the instance) are not inserted, and not returned.
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO rule_enforcements (id, trigger_instance_id, execution_id, failure_reason, rule_ref, rule_id, rule_uid, enforced_at, status) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
             ON CONFLICT (trigger_instance_id, rule_ref) DO NOTHING RETURNING id",
        )
        .bind(column(|e| Some(e.id.as_str())))
        .bind(column(|e| Some(e.trigger_instance_id.as_str())))
        .bind(column(|e| e.execution_id.as_deref()))
        .bind(column(|e| e.failure_reason.as_deref()))
        .bind(column(|e| Some(e.rule_ref.as_str())))
        .bind(column(|e| Some(e.rule_id.as_str())))
        .bind(column(|e| Some(e.rule_uid.as_str())))
        .bind(column(|e| Some(e.enforced_at.as_str())))
        .bind(column(|e| Some(e.status.as_str())))
        .fetch_all(&mut *tx)
        .await?;
        // Executions named by an enforcement that was already stored: not requested again.
        let mut skipped: Vec<&str> = Vec::new();
        for e in enforcements {
            if !inserted.contains(&e.id) {
                tracing::warn!(
                    trigger_instance = %e.trigger_instance_id,
                    rule = %e.rule_ref,
                    "the rule was already enforced for this trigger instance; the second evaluation is not recorded"
                );
                skipped.extend(e.execution_id.as_deref());
            }
        }
        let executions: Vec<&Execution> = finished
            .iter()
            .flat_map(|f| &f.executions)
            .filter(|e| !skipped.contains(&e.id.as_str()))
            .collect();
        if !executions.is_empty() {
            Self::insert_executions(&mut tx, &executions).await?;
            sqlx::query(NOTIFY_WORK).execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE trigger_instances t SET status = f.status, updated_at = $3, owner = NULL, \
             lease_until = NULL FROM UNNEST($1::text[], $2::text[]) AS f (id, status) \
             WHERE t.id = f.id",
        )
        .bind(finished.iter().map(|f| f.id.as_str()).collect::<Vec<_>>())
        .bind(
            finished
                .iter()
                .map(|f| f.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(crate::ids::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rule_enforcement(&self, id: &str) -> Result<Option<RuleEnforcement>> {
        let row = sqlx::query("SELECT * FROM rule_enforcements WHERE id = $1")
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
                "enforced_at DESC, rule_ref ASC, seq DESC",
                q.limit,
                q.offset,
            )
            .await?;
        Ok(Page {
            items: rows.iter().map(sql::enforcement).collect::<Result<_>>()?,
            total,
        })
    }

    async fn insert_execution(&self, execution: &Execution, trace: Option<&Trace>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some(t) = trace {
            sqlx::query(
                "INSERT INTO traces (id, trace_tag, start_timestamp) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&t.id)
            .bind(&t.trace_tag)
            .bind(&t.start_timestamp)
            .execute(&mut *tx)
            .await?;
        }
        Self::insert_executions(&mut tx, &[execution]).await?;
        sqlx::query(NOTIFY_WORK).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn execution(&self, id: &str) -> Result<Option<Execution>> {
        sqlx::query("SELECT * FROM executions WHERE id = $1")
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
                |qb| {
                    sql::push_execution_filters(qb, q);
                    push_field_filters(qb, &q.fields, &q.traces);
                },
                &sql::execution_order(q.ascending, "seq"),
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
        let only_from: Vec<&str> = only_from.iter().map(|s| s.as_str()).collect();
        let mut tx = self.pool.begin().await?;
        let mut replaced = Vec::with_capacity(executions.len());
        for e in executions {
            replaced.push(self.update_one(&mut tx, e, &only_from).await?);
        }
        tx.commit().await?;
        for (e, _) in executions.iter().zip(&replaced).filter(|(_, done)| **done) {
            if e.status == ExecutionStatus::Canceling {
                self.announce(Change::Cancel(e.id.clone())).await;
            }
        }
        Ok(replaced)
    }

    async fn claim_requested(
        &self,
        limit: u64,
        runners: Runners<'_>,
        start: &(dyn for<'e> Fn(&'e mut Execution) + Send + Sync),
    ) -> Result<Vec<Execution>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT * FROM executions WHERE status = 'requested' AND {} ORDER BY {} \
             LIMIT $1 FOR UPDATE SKIP LOCKED",
            runners.sql(),
            sql::execution_order(true, "seq")
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut execution = sql::execution(row)?;
            start(&mut execution);
            // The row is locked and `requested`: the update cannot miss.
            if self
                .update_one(&mut tx, &execution, &[ExecutionStatus::Requested.as_str()])
                .await?
            {
                claimed.push(execution);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Those due, read without a lock, then moved each only if it is still `delayed`: of
    /// several nodes promoting at once, one moves each.
    async fn promote_delayed(
        &self,
        now: &str,
        limit: u64,
        promote: &(dyn for<'e> Fn(&'e mut Execution) + Send + Sync),
    ) -> Result<Vec<Execution>> {
        let due = sqlx::query(
            "SELECT * FROM executions WHERE status = 'delayed' AND due_at <= $1 \
             ORDER BY due_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(sql::execution)
        .collect::<Result<Vec<_>>>()?;
        crate::move_from(self, due, promote, ExecutionStatus::Delayed).await
    }

    async fn next_delayed(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(sql::NEXT_DELAYED)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn trace(&self, id: &str) -> Result<Option<Trace>> {
        let Some(row) = sqlx::query("SELECT * FROM traces WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(self.assemble_traces(&[row]).await?.pop())
    }

    async fn list_traces(&self, q: &TraceQuery) -> Result<Page<Trace>> {
        let filters = |qb: &mut QueryBuilder<'_, Postgres>| {
            sql::push_trace_filters(qb, q, "document::jsonb #>> '{context,trace_context,id_}'");
        };
        let order = if q.ascending {
            "start_timestamp ASC, trace_tag ASC, seq ASC"
        } else {
            "start_timestamp DESC, trace_tag ASC, seq DESC"
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
        sqlx::query("INSERT INTO api_keys (id, user_name, key_hash, metadata, created_at, enabled) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&key.id)
            .bind(&key.user)
            .bind(&key.key_hash)
            .bind(key.metadata.to_string())
            .bind(&key.created_at)
            .bind(key.enabled)
            .execute(&self.pool)
            .await
            .map_err(|e| sql::conflict(e, "an API key with this key_hash"))?;
        Ok(())
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::api_key).transpose()
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::api_key).transpose()
    }

    async fn list_api_keys(&self, limit: Option<u64>, offset: u64) -> Result<Page<ApiKey>> {
        let (rows, total) = self
            .page_of("api_keys", |_| {}, "seq", limit, offset)
            .await?;
        Ok(Page {
            items: rows.iter().map(sql::api_key).collect::<Result<_>>()?,
            total,
        })
    }

    async fn update_api_key(&self, key: &ApiKey) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET user_name = $1, metadata = $2, enabled = $3 WHERE id = $4",
        )
        .bind(&key.user)
        .bind(key.metadata.to_string())
        .bind(key.enabled)
        .bind(&key.id)
        .execute(&self.pool)
        .await?;
        Ok(self
            .announce_if(done.rows_affected() > 0, Change::Credentials)
            .await)
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(self
            .announce_if(done.rows_affected() > 0, Change::Credentials)
            .await)
    }

    async fn insert_token(&self, token: &Token) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, user_name, token, expiry, metadata) VALUES ($1, $2, $3, $4, $5)",
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
        let row = sqlx::query("SELECT * FROM tokens WHERE token = $1")
            .bind(token)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::token).transpose()
    }

    async fn insert_trigger_type(&self, t: &TriggerType) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO trigger_types (id, ref, pack, name, description, payload_schema, parameters_schema, tags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
        .await;
        if let Err(e) = inserted {
            return Err(self
                .keyed_conflict(
                    e,
                    "trigger_types",
                    &t.reference,
                    "trigger type",
                    "this trigger type",
                )
                .await);
        }
        Ok(())
    }

    async fn trigger_type(&self, ref_or_id: &str) -> Result<Option<TriggerType>> {
        let row = sqlx::query("SELECT * FROM trigger_types WHERE ref = $1 OR id = $1")
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
            "UPDATE trigger_types SET ref = $1, pack = $2, name = $3, description = $4, payload_schema = $5, parameters_schema = $6, tags = $7 WHERE id = $8",
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
        let inserted = sqlx::query(
            "INSERT INTO triggers (id, ref, pack, name, trigger_type, parameters, description) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.id)
        .bind(&t.reference)
        .bind(&t.pack)
        .bind(&t.name)
        .bind(&t.trigger_type)
        .bind(t.parameters.to_string())
        .bind(&t.description)
        .execute(&self.pool)
        .await;
        if let Err(e) = inserted {
            return Err(self
                .keyed_conflict(e, "triggers", &t.reference, "trigger", "this trigger")
                .await);
        }
        // The rules on its type and parameters use it now, on every node.
        self.announce(Change::Rules).await;
        Ok(())
    }

    async fn trigger(&self, ref_or_id: &str) -> Result<Option<StoredTrigger>> {
        let row = sqlx::query("SELECT * FROM triggers WHERE ref = $1 OR id = $1")
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
            "UPDATE triggers SET ref = $1, pack = $2, name = $3, trigger_type = $4, parameters = $5, description = $6 WHERE id = $7",
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
        Ok(self
            .announce_if(done.rows_affected() > 0, Change::Rules)
            .await)
    }

    async fn delete_trigger(&self, id: &str) -> Result<bool> {
        let deleted = self.delete_by_id("triggers", id).await?;
        Ok(self.announce_if(deleted, Change::Rules).await)
    }

    async fn insert_rule(&self, rule: &StoredRule) -> Result<()> {
        let inserted = sqlx::query("INSERT INTO rules (id, ref, pack, name, document, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&rule.id)
            .bind(&rule.reference)
            .bind(&rule.pack)
            .bind(&rule.name)
            .bind(rule.document.to_string())
            .bind(&rule.created_by)
            .bind(crate::ids::now())
            .execute(&self.pool)
            .await;
        if let Err(e) = inserted {
            return Err(self
                .keyed_conflict(e, "rules", &rule.reference, "Rule", "a rule with this ref")
                .await);
        }
        self.announce(Change::Rules).await;
        Ok(())
    }

    async fn list_rules(&self) -> Result<Vec<StoredRule>> {
        let rows = sqlx::query("SELECT * FROM rules ORDER BY pack, name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sql::stored_rule).collect()
    }

    async fn update_rule(&self, rule: &StoredRule) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE rules SET ref = $1, pack = $2, name = $3, document = $4 WHERE id = $5",
        )
        .bind(&rule.reference)
        .bind(&rule.pack)
        .bind(&rule.name)
        .bind(rule.document.to_string())
        .bind(&rule.id)
        .execute(&self.pool)
        .await
        .map_err(|e| sql::conflict(e, "a rule with this ref"))?;
        Ok(self
            .announce_if(done.rows_affected() > 0, Change::Rules)
            .await)
    }

    async fn delete_rule(&self, id: &str) -> Result<bool> {
        let deleted = self.delete_by_id("rules", id).await?;
        Ok(self.announce_if(deleted, Change::Rules).await)
    }

    fn cluster(&self) -> Option<&Cluster> {
        Some(&self.cluster)
    }

    fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }

    async fn publish(&self, change: Change) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(change.encode())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn renew_leases(&self, instances: &[String], executions: &[String]) -> Result<Renewal> {
        let held: Vec<(String, String)> = sqlx::query_as(
            "WITH instances AS ( \
                 UPDATE trigger_instances SET lease_until = now() + make_interval(secs => $2) \
                 WHERE owner = $1 AND status = 'processing' AND id = ANY($3)) \
             UPDATE executions SET lease_until = now() + make_interval(secs => $2) \
             WHERE owner = $1 AND status IN ('scheduled', 'running', 'canceling') \
             AND id = ANY($4) \
             RETURNING id, status",
        )
        .bind(&self.cluster.node_id)
        .bind(self.lease_secs)
        .bind(instances)
        .bind(executions)
        .fetch_all(&self.pool)
        .await?;
        // Claimed by this node since it started (a lease that ends after start + lease was
        // taken by this process, even if an earlier one had the same node id), not held, and
        // not renewed for half a lease (a claim is held microseconds after its answer arrives,
        // so these answers never arrived).
        let unheld: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM executions WHERE owner = $1 \
             AND status IN ('scheduled', 'running') AND NOT (id = ANY($3)) \
             AND lease_until < now() + make_interval(secs => $2 / 2) \
             AND lease_until >= to_timestamp($4) + make_interval(secs => $2)",
        )
        .bind(&self.cluster.node_id)
        .bind(self.lease_secs)
        .bind(executions)
        .bind(self.started_epoch)
        .fetch_all(&self.pool)
        .await?;
        Ok(Renewal {
            canceling: held
                .into_iter()
                .filter(|(_, status)| status == ExecutionStatus::Canceling.as_str())
                .map(|(id, _)| id)
                .collect(),
            unheld,
        })
    }

    async fn orphaned_executions(&self, status: ExecutionStatus) -> Result<Vec<Execution>> {
        // Only these statuses are ever held; an execution in any other (`requested`, a
        // completed one) is nobody's to lose.
        if !matches!(
            status,
            ExecutionStatus::Scheduled | ExecutionStatus::Running | ExecutionStatus::Canceling
        ) {
            return Ok(Vec::new());
        }
        // Claimed by this node before they are returned, so of several nodes settling orphans
        // at once one gets each, and the settle write (`update_execution`) is this node's to
        // make. A lease counts as lost only half a lease after it ran out, so a node that was
        // merely cut off from the database as long as everyone (an outage, a failover) has
        // time to renew before others take its runs; and this process's own claims are never
        // orphans (it holds them, or `renew_leases` reports them as unheld).
        // The claim's owner is `<node>#reaper`: not a run of this node, so `renew_leases`
        // never reports it as a claim this node did not run (which would run it again), and
        // if the settle write fails, the claim lapses and a reaper takes it again.
        let rows = sqlx::query(
            "UPDATE executions SET owner = $2 || '#reaper', \
                 lease_until = now() + make_interval(secs => $3) \
             WHERE id IN (SELECT id FROM executions WHERE status = $1 \
                 AND (lease_until IS NULL OR lease_until < now() - make_interval(secs => $3 / 2)) \
                 AND (owner IS DISTINCT FROM $2 \
                      OR lease_until < to_timestamp($4) + make_interval(secs => $3)) \
                 ORDER BY seq FOR UPDATE SKIP LOCKED) \
             RETURNING *",
        )
        .bind(status.as_str())
        .bind(&self.cluster.node_id)
        .bind(self.lease_secs)
        .bind(self.started_epoch)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sql::execution).collect()
    }

    async fn purge(&self, what: Retained, before: &str, limit: u64) -> Result<u64> {
        // The same records as on SQLite. Trigger instances are taken with SKIP LOCKED, so a
        // purge never waits for a rules engine finishing one.
        let sql = match what {
            Retained::TriggerInstances => {
                "DELETE FROM trigger_instances WHERE id IN (SELECT id FROM trigger_instances \
                 WHERE occurrence_time < $1 AND status NOT IN ('pending', 'processing') \
                 ORDER BY occurrence_time LIMIT $2 FOR UPDATE SKIP LOCKED)"
            }
            Retained::Traces => {
                "DELETE FROM traces WHERE id IN (SELECT t.id FROM traces t \
                 WHERE t.start_timestamp < $1 AND NOT EXISTS \
                 (SELECT 1 FROM trigger_instances i WHERE i.trace_id = t.id) \
                 ORDER BY t.start_timestamp LIMIT $2)"
            }
            Retained::Enforcements => {
                "DELETE FROM rule_enforcements WHERE id IN (SELECT id FROM rule_enforcements \
                 WHERE enforced_at < $1 ORDER BY enforced_at LIMIT $2)"
            }
            Retained::Executions => {
                "DELETE FROM executions WHERE id IN (SELECT id FROM executions \
                 WHERE end_timestamp < $1 AND status IN \
                 ('succeeded', 'failed', 'timeout', 'canceled', 'abandoned') \
                 ORDER BY end_timestamp LIMIT $2)"
            }
        };
        let mut tx = self.pool.begin().await?;
        let mine: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema()))")
                .bind(PURGE_LOCK)
                .fetch_one(&mut *tx)
                .await?;
        if !mine {
            // Another node is purging.
            return Ok(0);
        }
        let done = sqlx::query(sql)
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    fn datastore_key(&self) -> Result<Arc<DatastoreKey>> {
        self.datastore_key.get()
    }

    async fn kv_get(&self, name: &str) -> Result<Option<KvPair>> {
        let row = sqlx::query(&format!("SELECT * FROM kv WHERE name = $1 AND {KV_LIVE}"))
            .bind(name)
            .bind(crate::ids::now())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sql::kv_pair).transpose()
    }

    async fn kv_all(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT name, value FROM kv WHERE (expire_at IS NULL OR expire_at > $1) ORDER BY name",
        )
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
                    // The prefix is text, not a LIKE pattern.
                    qb.push(" WHERE (expire_at IS NULL OR expire_at > ")
                        .push_bind(now.clone())
                        .push(") AND starts_with(name, ")
                        .push_bind(prefix.to_owned())
                        .push(")");
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
        let (stored, secret) = match sql::fixed_kv(&self.datastore_key, name, value)? {
            Some(fixed) => {
                sqlx::query(
                    "INSERT INTO kv (name, value, secret, expire_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                     secret = excluded.secret, expire_at = excluded.expire_at",
                )
                .bind(name)
                .bind(&fixed.0)
                .bind(fixed.1)
                .bind(&expire_timestamp)
                .execute(&self.pool)
                .await?;
                fixed
            }
            None => {
                let KvValue::KeepSecrecy(plaintext) = value else {
                    unreachable!("only KeepSecrecy depends on the current pair")
                };
                let mut tx = self.pool.begin().await?;
                let current = Self::lock_kv(&mut tx, name).await?;
                let (stored, secret) =
                    sql::kept_secrecy(&self.datastore_key, current.as_ref(), plaintext)?;
                Self::write_kv(&mut tx, name, &stored, secret, expire_timestamp.as_deref()).await?;
                tx.commit().await?;
                (stored, secret)
            }
        };
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
            "DELETE FROM kv WHERE name = $1 RETURNING {KV_LIVE}"
        ))
        .bind(name)
        .bind(crate::ids::now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(live == Some(true))
    }

    async fn kv_increment(&self, name: &str, delta: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let current = Self::lock_kv(&mut tx, name).await?;
        // A refusal rolls back (dropping `tx`): nothing is written.
        let next = sql::incremented(name, current.as_ref(), delta)?;
        let expire_at = current.and_then(|pair| pair.expire_timestamp);
        Self::write_kv(
            &mut tx,
            name,
            &next.to_string(),
            false,
            expire_at.as_deref(),
        )
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn kv_compare_and_swap(
        &self,
        name: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let current = Self::lock_kv(&mut tx, name).await?;
        if !sql::swaps(name, current.as_ref(), expected)? {
            // Rolled back when `tx` is dropped: nothing written.
            return Ok(false);
        }
        let expire_at = current.and_then(|pair| pair.expire_timestamp);
        Self::write_kv(&mut tx, name, new, false, expire_at.as_deref()).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The condition that a `kv` row has not expired; the current time is bound as `$2`.
const KV_LIVE: &str = "(expire_at IS NULL OR expire_at > $2)";

/// How many expired delivery ids a commit that stores deliveries deletes at least (twice the
/// batch's deliveries when that is more).
const DELIVERY_PURGE_BATCH: i64 = 32;

/// Records the deliveries of `events` in `tx` and says which events are duplicates: of an
/// unexpired delivery in the store (on any node: an insert of a key another transaction holds
/// waits for it, then finds its row), or of an earlier event of the batch. The keys are
/// inserted in sorted order, so two nodes' batches cannot deadlock on each other.
async fn claim_deliveries(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    events: &[NewEvent],
) -> Result<Vec<Committed>> {
    let now = crate::ids::now();
    // The first event of the batch with each key; later ones are its duplicates.
    let mut first: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(d) = &e.delivery {
            first.entry(d.key.as_str()).or_insert(i);
        }
    }
    let column = |f: fn(&NewEvent) -> &str| -> Vec<&str> {
        first.values().map(|&i| f(&events[i])).collect()
    };
    let keys: Vec<&str> = first.keys().copied().collect();
    let claimed: Vec<String> = sqlx::query_scalar(
        "INSERT INTO deliveries (key, trace_id, trace_tag, expires_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
         ON CONFLICT (key) DO UPDATE SET trace_id = EXCLUDED.trace_id, \
         trace_tag = EXCLUDED.trace_tag, expires_at = EXCLUDED.expires_at \
         WHERE deliveries.expires_at <= $5 RETURNING key",
    )
    .bind(&keys)
    .bind(column(|e| &e.trace.id))
    .bind(column(|e| &e.trace.trace_tag))
    .bind(column(|e| {
        e.delivery.as_ref().map_or("", |d| d.expires_at.as_str())
    }))
    .bind(&now)
    .fetch_all(&mut **tx)
    .await?;
    let claimed: std::collections::HashSet<&str> = claimed.iter().map(String::as_str).collect();
    let held: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !claimed.contains(k))
        .collect();
    let mut originals: std::collections::HashMap<String, Committed> =
        std::collections::HashMap::new();
    if !held.is_empty() {
        let rows =
            sqlx::query("SELECT key, trace_id, trace_tag FROM deliveries WHERE key = ANY($1)")
                .bind(&held)
                .fetch_all(&mut **tx)
                .await?;
        for r in &rows {
            originals.insert(
                r.try_get("key")?,
                Committed::Duplicate {
                    trace_id: r.try_get("trace_id")?,
                    trace_tag: r.try_get("trace_tag")?,
                },
            );
        }
    }
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let Some(d) = &e.delivery else {
                return Ok(Committed::Stored);
            };
            if let Some(original) = originals.get(&d.key) {
                return Ok(original.clone());
            }
            let owner = first[d.key.as_str()];
            if owner == i {
                return Ok(Committed::Stored);
            }
            Ok(Committed::Duplicate {
                trace_id: events[owner].trace.id.clone(),
                trace_tag: events[owner].trace.trace_tag.clone(),
            })
        })
        .collect()
}

/// The document conditions of an execution query: a string matches a JSON string, or a
/// number whose text it is.
fn push_field_filters(
    qb: &mut QueryBuilder<'_, Postgres>,
    filters: &[FieldFilter],
    traces: &[String],
) {
    if !traces.is_empty() {
        qb.push(" AND executions.document::jsonb #>> '{context,trace_context,id_}' IN (");
        let mut list = qb.separated(", ");
        for trace in traces {
            list.push_bind(trace.clone());
        }
        list.push_unseparated(")");
    }
    for filter in filters {
        match &filter.value {
            None => {
                qb.push(" AND COALESCE(jsonb_typeof(executions.document::jsonb #> ")
                    .push_bind(filter.path.clone())
                    .push("), 'null') = 'null'");
            }
            Some(value) => {
                qb.push(" AND jsonb_typeof(executions.document::jsonb #> ")
                    .push_bind(filter.path.clone())
                    .push(") IN ('string', 'number') AND executions.document::jsonb #>> ")
                    .push_bind(filter.path.clone())
                    .push(" = ")
                    .push_bind(value.clone());
            }
        }
    }
}
