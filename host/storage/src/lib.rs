//! Stormhook's durable store.
//!
//! A [`Store`] trait with one module per backend: [`sqlite`] is the embedded default (WAL,
//! `synchronous=FULL`: a commit is on disk before it returns); [`postgres`] is one database
//! shared by several nodes (claims under leases, changes by `LISTEN`/`NOTIFY`). The server
//! holds either as `Arc<dyn Store>`.
//!
//! [`ingest::Ingest`] puts group commit in front of the store: one writer task commits every
//! waiting event in one transaction, so durable acceptance costs one fsync per batch rather than
//! per request.
//!
//! # Layout
//!
//! - [`models`]: the records (plain data; the server shapes the JSON).
//! - [`sqlite`]: the SQLite backend and its migrations (`migrations/sqlite`).
//! - [`postgres`]: the PostgreSQL backend and its migrations (`migrations/postgres`).
//! - `sql`: what the SQL backends share (row decoding, list filters, datastore rules).
//! - [`ingest`]: group commit of accepted events.
//! - [`ids`]: StackStorm-style object ids and timestamps.
//! - [`crypto`]: the key that encrypts datastore secrets, StackStorm's format.

pub mod crypto;
pub mod ids;
pub mod ingest;
pub mod models;
pub mod postgres;
mod sql;
pub mod sqlite;
pub mod status;

use async_trait::async_trait;

pub use models::*;
pub use status::{EnforcementStatus, ExecutionStatus, InstanceStatus, UnknownStatus};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A unique key is taken; carries the id of the existing record when known.
    #[error("conflict: {message}")]
    Conflict {
        /// What clashed.
        message: String,
        /// The id of the record that holds the key.
        existing_id: Option<String>,
    },
    /// The database failed (IO, corruption, busy past the timeout).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The group-commit writer connection failed.
    #[error("database error: {0}")]
    Writer(String),
    /// The store cannot commit right now (the disk is full, the database is locked past its
    /// timeout, an I/O error); nothing was written, and the same write may succeed later.
    #[error("the store cannot commit right now: {0}")]
    Unavailable(String),
    /// A stored value could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The migrations could not be applied.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The request cannot be done with this value: an increment of a value that is not a
    /// decimal integer or that overflows, an increment or compare-and-swap of a secret, a
    /// ciphertext that does not decrypt with the datastore key. The message is for the caller.
    #[error("{0}")]
    Invalid(String),
    /// The datastore key (which encrypts secrets) cannot be read or created.
    #[error("the datastore key: {0}")]
    Key(#[from] crypto::KeyFileError),
}

impl StorageError {
    /// Whether the store could not do this now for a reason outside the request (a full disk,
    /// a lock held past the timeout, an I/O error, no free connection): nothing was written,
    /// and the same call may succeed later. The server answers these 503 with `Retry-After`.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(e) => sqlx_unavailable(e),
            _ => false,
        }
    }
}

impl StorageError {
    /// A short reason for a client, without paths or SQL: the database's own message when
    /// there is one (SQLite's description of its result code, `database or disk is full`,
    /// `database is locked`; PostgreSQL's server message, `the database system is shutting
    /// down`).
    pub fn cause(&self) -> String {
        match self {
            Self::Unavailable(m) | Self::Writer(m) => m.clone(),
            Self::Database(sqlx::Error::Database(db)) => db.message().to_owned(),
            Self::Database(sqlx::Error::PoolTimedOut) => "no database connection is free".into(),
            Self::Database(sqlx::Error::PoolClosed) => "the store is closed".into(),
            Self::Database(sqlx::Error::Io(e)) => format!("the database cannot be reached: {e}"),
            other => other.to_string(),
        }
    }
}

/// SQLite primary result codes that mean "not now" rather than "never": `SQLITE_BUSY` (5),
/// `SQLITE_LOCKED` (6), `SQLITE_NOMEM` (7), `SQLITE_IOERR` (10), `SQLITE_FULL` (13),
/// `SQLITE_CANTOPEN` (14), `SQLITE_PROTOCOL` (15).
pub(crate) fn sqlite_code_unavailable(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 7 | 10 | 13 | 14 | 15)
}

/// PostgreSQL SQLSTATEs that mean "not now" rather than "never": class `08` (connection
/// exception), class `53` (insufficient resources: disk full, out of memory, too many
/// connections), `57P01`/`57P02`/`57P03` (the server is shutting down or cannot take
/// connections yet), `40001`/`40P01` (serialization failure, deadlock: retry).
fn postgres_code_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
}

fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                db.code().is_some_and(|c| postgres_code_unavailable(&c))
            } else {
                db.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(sqlite_code_unavailable)
            }
        }
        _ => false,
    }
}

/// Shorthand for storage results.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything Stormhook keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Commits a batch of accepted events (traces and trigger instances) in one transaction,
    /// and says what became of each, in order: an event with a [`DeliveryKey`] that an earlier
    /// (unexpired) delivery holds, in the store or earlier in the batch, is not stored.
    ///
    /// # Errors
    ///
    /// The transaction failed; nothing of the batch is stored.
    async fn commit_events(&self, events: &[NewEvent]) -> Result<Vec<Committed>>;

    /// One trigger instance.
    async fn trigger_instance(&self, id: &str) -> Result<Option<TriggerInstance>>;
    /// A page of trigger instances, newest first, and the total matching.
    async fn list_trigger_instances(
        &self,
        query: &TriggerInstanceQuery,
    ) -> Result<Page<TriggerInstance>>;
    /// Moves a trigger instance to `status`; returns whether it exists.
    async fn set_trigger_instance_status(&self, id: &str, status: InstanceStatus) -> Result<bool>;

    /// Up to `limit` pending trigger instances for this node's rules engine, oldest first, each
    /// with its number in the store's insertion order. One that cannot be decoded comes as
    /// [`Unreadable`], so it cannot stop the engine.
    ///
    /// A store of one node (SQLite) returns those stored after the one numbered `after` (0:
    /// from the first), and reading writes nothing: the one rules engine of a store keeps the
    /// last number it took and asks for what follows. Instances are committed in number order
    /// (one writer at a time), so nothing committed later is numbered lower.
    ///
    /// A shared store ([`Store::cluster`] is some) ignores `after` and claims: it moves the
    /// instances to `processing` under this node's lease (`FOR UPDATE SKIP LOCKED`, so two
    /// nodes never take the same one), taking `pending` ones and `processing` ones whose lease
    /// expired (their node died: they are evaluated again, at least once in all).
    async fn pending_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<(i64, std::result::Result<TriggerInstance, Unreadable>)>>;
    /// Moves instances left in `processing` (by versions that claimed them) back to `pending`;
    /// returns how many. A shared store moves none (other nodes' claims are live; expired ones
    /// are claimed again by [`Store::pending_after`]) and returns 0.
    async fn requeue_processing(&self) -> Result<u64>;
    /// Stores the enforcements of trigger instances and the executions they requested, and moves
    /// each instance to its status, all in one transaction.
    ///
    /// One enforcement per (trigger instance, rule ref) is a unique key: an enforcement whose
    /// key is already stored (the instance was evaluated again after a crash or an expired
    /// lease) is skipped, and so is the execution it names (`execution_id`), so evaluating an
    /// instance twice never requests its action twice.
    async fn finish_trigger_instances(&self, finished: &[FinishedInstance]) -> Result<()>;
    /// One rule enforcement.
    async fn rule_enforcement(&self, id: &str) -> Result<Option<RuleEnforcement>>;
    /// A page of rule enforcements, newest first.
    async fn list_rule_enforcements(
        &self,
        query: &EnforcementQuery,
    ) -> Result<Page<RuleEnforcement>>;

    /// Stores a new execution, and in the same transaction `trace`, the trace it starts (one
    /// with its id that is stored already is kept as it is).
    async fn insert_execution(&self, execution: &Execution, trace: Option<&Trace>) -> Result<()>;
    /// One execution.
    async fn execution(&self, id: &str) -> Result<Option<Execution>>;
    /// A page of executions (newest first unless `ascending`), and the total matching.
    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Page<Execution>>;
    /// Replaces an execution (matched by id) when its stored status is one of `only_from`
    /// (any status when empty); returns whether it was replaced. This is how a status
    /// transition is claimed: of two writers moving `requested` on, one wins.
    async fn update_execution(
        &self,
        execution: &Execution,
        only_from: &[ExecutionStatus],
    ) -> Result<bool>;
    /// [`Store::update_execution`] for many executions in one transaction; says which were
    /// replaced.
    ///
    /// On a shared store, an execution moved to `running` is claimed by this node (its owner
    /// and lease are recorded with it; the lease is renewed by [`Store::renew_leases`]), one
    /// moved to `canceling` keeps its owner and is announced as [`Change::Cancel`], and one
    /// moved to a completed status is released.
    async fn update_executions(
        &self,
        executions: &[Execution],
        only_from: &[ExecutionStatus],
    ) -> Result<Vec<bool>>;

    /// Claims up to `limit` `requested` executions of `runners` for this node, oldest first:
    /// `start` moves
    /// each one on (to `running`, with its runner info) and the result is stored, all in one
    /// transaction; returns those claimed. Of two claimers, one gets each execution: by a
    /// conditional update here (the default); on a shared store with `FOR UPDATE SKIP LOCKED`,
    /// so nodes do not even compete for the same rows, under this node's lease.
    async fn claim_requested(
        &self,
        limit: u64,
        runners: Runners<'_>,
        start: &(dyn for<'e> Fn(&'e mut Execution) + Send + Sync),
    ) -> Result<Vec<Execution>> {
        let requested: Vec<Execution> = self
            .list_executions(&ExecutionQuery {
                statuses: vec![ExecutionStatus::Requested.as_str().to_owned()],
                ascending: true,
                ..Default::default()
            })
            .await?
            .items
            .into_iter()
            .filter(|e| runners.take(&e.runner))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect();
        move_from(self, requested, start, ExecutionStatus::Requested).await
    }

    /// Moves up to `limit` `delayed` executions that are due by `now` (their
    /// [`Execution::due_at`] is not later; a timestamp in the [`ids`] format) on, earliest
    /// first: `promote` moves each one (to `requested`) and the result is stored, each only if
    /// it is still `delayed` (a conditional update: of several nodes promoting at once, one
    /// moves each, and a cancel that came first wins). Returns those moved.
    async fn promote_delayed(
        &self,
        now: &str,
        limit: u64,
        promote: &(dyn for<'e> Fn(&'e mut Execution) + Send + Sync),
    ) -> Result<Vec<Execution>>;
    /// When the earliest `delayed` execution is due (its [`Execution::due_at`]), if there is
    /// one.
    async fn next_delayed(&self) -> Result<Option<String>>;

    /// One trace.
    async fn trace(&self, id: &str) -> Result<Option<Trace>>;
    /// A page of traces, newest first, and the total matching.
    async fn list_traces(&self, query: &TraceQuery) -> Result<Page<Trace>>;

    /// Stores a new API key (its hash). Conflict when the hash exists.
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()>;
    /// The API key with this hash.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    /// The API key with this id.
    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>>;
    /// A page of API keys in creation order.
    async fn list_api_keys(&self, limit: Option<u64>, offset: u64) -> Result<Page<ApiKey>>;
    /// Replaces user, metadata and enabled of an API key; returns whether it exists.
    async fn update_api_key(&self, key: &ApiKey) -> Result<bool>;
    /// Deletes an API key; returns whether it existed.
    async fn delete_api_key(&self, id: &str) -> Result<bool>;

    /// Stores a new token.
    async fn insert_token(&self, token: &Token) -> Result<()>;
    /// The token with this value.
    async fn token(&self, token: &str) -> Result<Option<Token>>;

    /// Stores a trigger type. Conflict when the ref exists.
    async fn insert_trigger_type(&self, trigger_type: &TriggerType) -> Result<()>;
    /// The trigger type with this ref or id.
    async fn trigger_type(&self, ref_or_id: &str) -> Result<Option<TriggerType>>;
    /// All trigger types, sorted by ref.
    async fn list_trigger_types(&self) -> Result<Vec<TriggerType>>;
    /// Replaces a trigger type (matched by id); returns whether it exists.
    async fn update_trigger_type(&self, trigger_type: &TriggerType) -> Result<bool>;
    /// Deletes a trigger type by id; returns whether it existed.
    async fn delete_trigger_type(&self, id: &str) -> Result<bool>;

    /// Stores a trigger. Conflict (with the existing id) when the ref exists.
    async fn insert_trigger(&self, trigger: &StoredTrigger) -> Result<()>;
    /// The trigger with this ref or id.
    async fn trigger(&self, ref_or_id: &str) -> Result<Option<StoredTrigger>>;
    /// All stored triggers, sorted by ref.
    async fn list_triggers(&self) -> Result<Vec<StoredTrigger>>;
    /// Replaces a trigger (matched by id); returns whether it exists. Conflict when another
    /// trigger has the new ref.
    async fn update_trigger(&self, trigger: &StoredTrigger) -> Result<bool>;
    /// Deletes a trigger by id; returns whether it existed.
    async fn delete_trigger(&self, id: &str) -> Result<bool>;

    /// Stores a new API rule. Conflict (with the existing id) when the ref exists.
    async fn insert_rule(&self, rule: &StoredRule) -> Result<()>;
    /// Every API rule, sorted by pack and name.
    async fn list_rules(&self) -> Result<Vec<StoredRule>>;
    /// Replaces an API rule (matched by id); returns whether it exists.
    async fn update_rule(&self, rule: &StoredRule) -> Result<bool>;
    /// Deletes an API rule by id; returns whether it existed.
    async fn delete_rule(&self, id: &str) -> Result<bool>;

    /// This node's place in a cluster when the store is shared by several nodes (PostgreSQL);
    /// `None` for a store of one node (SQLite), the default.
    fn cluster(&self) -> Option<&Cluster> {
        None
    }

    /// A receiver of the [`Change`]s every node must see (this node's own included), when the
    /// store carries them between nodes; `None` for a store of one node, where the server
    /// applies its changes itself.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    /// Announces `change` to every node sharing the store (no-op for a store of one node).
    async fn publish(&self, change: Change) -> Result<()> {
        let _ = change;
        Ok(())
    }

    /// Extends the lease of the claims this node still works on: the trigger instances
    /// `instances` (in `processing`) and the executions `executions` (claimed and not yet
    /// recorded as ended). Returns those of `executions` that are `canceling` (a cancel
    /// through another node; the fallback when a notification was missed) and the executions
    /// this node claimed but does not hold ([`Renewal::unheld`]). Only the ids given are
    /// renewed: an instance claimed but not held (its answer was lost with a broken
    /// connection) expires and is taken over like a dead node's. A store of one node has no
    /// leases: nothing to do.
    async fn renew_leases(&self, instances: &[String], executions: &[String]) -> Result<Renewal> {
        let _ = (instances, executions);
        Ok(Renewal::default())
    }

    /// Executions in `status` (`scheduled`, `running` or `canceling`) that no live node holds:
    /// on a store of one node, every one of them (call it at start, before this node runs
    /// anything); on a shared store, those whose owner's lease expired.
    async fn orphaned_executions(&self, status: ExecutionStatus) -> Result<Vec<Execution>> {
        Ok(self
            .list_executions(&ExecutionQuery {
                statuses: vec![status.as_str().to_owned()],
                ..Default::default()
            })
            .await?
            .items)
    }

    /// Deletes up to `limit` records of `what` older than `before` (a timestamp in the
    /// [`ids`] format) in one short transaction and returns how many it deleted; retention
    /// calls it again while it returns `limit`. Only finished records go: trigger instances
    /// not `pending`/`processing`, executions in a completed status, traces no kept trigger
    /// instance refers to. On a shared store at most one node purges at a time: a node that
    /// finds another purging deletes nothing and returns 0.
    async fn purge(&self, what: Retained, before: &str, limit: u64) -> Result<u64>;

    /// The key that encrypts the datastore's secrets, read (or, for a store that may, created)
    /// on first use and kept. See [`crypto`].
    ///
    /// # Errors
    ///
    /// [`StorageError::Key`]: the key file cannot be read, holds no usable key, or cannot be
    /// created.
    fn datastore_key(&self) -> Result<std::sync::Arc<crypto::DatastoreKey>>;
    /// The unexpired pair under `name`, its value as stored (a secret's is the ciphertext).
    async fn kv_get(&self, name: &str) -> Result<Option<KvPair>>;
    /// Every unexpired value by name, as stored: `st2kv.system` for templates, where a secret
    /// shows as its ciphertext (as in StackStorm; the `decrypt_kv` filter decrypts it).
    async fn kv_all(&self) -> Result<Vec<(String, String)>>;
    /// A page of the unexpired pairs whose name starts with `prefix`, by name, and how many
    /// there are.
    async fn kv_list(&self, prefix: &str, limit: Option<u64>, offset: u64) -> Result<Page<KvPair>>;
    /// Stores `value` under `name`, replacing the pair; it expires after `ttl` when one is
    /// given (and never otherwise). Expired pairs are purged here, a few at a time. Returns
    /// the pair as stored.
    ///
    /// # Errors
    ///
    /// [`StorageError::Invalid`] for an [`KvValue::Encrypted`] value that does not decrypt
    /// with the datastore key; [`StorageError::Key`] when a secret is to be encrypted and the
    /// key is unusable.
    async fn kv_put(
        &self,
        name: &str,
        value: KvValue<'_>,
        ttl: Option<std::time::Duration>,
    ) -> Result<KvPair>;
    /// Stores a plain `value` under `name`, with no expiry: [`Store::kv_put`] with
    /// [`KvValue::Plain`].
    async fn kv_set(&self, name: &str, value: &str) -> Result<()> {
        self.kv_put(name, KvValue::Plain(value), None)
            .await
            .map(drop)
    }
    /// Deletes the pair under `name`; returns whether an unexpired one existed.
    async fn kv_delete(&self, name: &str) -> Result<bool>;
    /// Atomically adds `delta` to the decimal integer under `name` (a missing or expired pair
    /// counts as 0) and returns the new value. The pair keeps its expiry.
    ///
    /// # Errors
    ///
    /// [`StorageError::Invalid`]: the value is not a decimal integer, the sum overflows an
    /// `i64`, or the pair is a secret.
    async fn kv_increment(&self, name: &str, delta: i64) -> Result<i64>;
    /// Atomically stores `new` under `name` only if the current unexpired value is `expected`
    /// (`None`: there is no unexpired pair); returns whether it stored. A replaced pair keeps
    /// its expiry; a new one has none.
    ///
    /// # Errors
    ///
    /// [`StorageError::Invalid`]: the pair is a secret (comparing would tell a plugin
    /// without the secrets grant whether it guessed the value).
    async fn kv_compare_and_swap(
        &self,
        name: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<bool>;
}

/// Moves executions read in status `from` on (`start` on each) in one batch, each only if it
/// is still in `from`; returns the ones moved. The tail of every backend's
/// [`Store::claim_requested`] that reads before it writes, and of
/// [`Store::promote_delayed`].
pub(crate) async fn move_from<S: Store + ?Sized>(
    store: &S,
    mut requested: Vec<Execution>,
    start: &(dyn for<'e> Fn(&'e mut Execution) + Send + Sync),
    from: ExecutionStatus,
) -> Result<Vec<Execution>> {
    if requested.is_empty() {
        return Ok(requested);
    }
    for execution in &mut requested {
        start(execution);
    }
    let claimed = store.update_executions(&requested, &[from]).await?;
    Ok(requested
        .into_iter()
        .zip(claimed)
        .filter_map(|(execution, ok)| ok.then_some(execution))
        .collect())
}
