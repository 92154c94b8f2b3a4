//! What the SQL backends share: decoding rows into records (generic over sqlx's row types),
//! the `WHERE` clauses of list queries, the datastore key's source, and the rules of the
//! datastore's atomic operations. Only SQL that is the same on every backend lives here.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use crate::crypto::DatastoreKey;
use crate::models::*;
use crate::{Result, StorageError};

/// The datastore key's file, read on first use (so a store that never holds a secret never
/// creates one) and kept for the life of the store.
#[derive(Debug)]
pub(crate) struct KeySource {
    /// The key file.
    path: std::path::PathBuf,
    /// Whether a missing file is generated (a default file) or is an error (a file the
    /// operator named).
    create: bool,
    /// The key once read.
    key: OnceLock<Arc<DatastoreKey>>,
}

impl KeySource {
    /// The key in `path`, read on first use; a missing file is created when `create`.
    pub(crate) fn lazy(path: std::path::PathBuf, create: bool) -> Self {
        Self {
            path,
            create,
            key: OnceLock::new(),
        }
    }

    /// The key in `path`, read now; the file must exist.
    pub(crate) fn read_now(path: &std::path::Path) -> Result<Self> {
        let key = DatastoreKey::read(path)?;
        Ok(Self {
            path: path.to_owned(),
            create: false,
            key: OnceLock::from(Arc::new(key)),
        })
    }

    /// The key, read (or created) on the first call.
    pub(crate) fn get(&self) -> Result<Arc<DatastoreKey>> {
        if let Some(key) = self.key.get() {
            return Ok(Arc::clone(key));
        }
        let key = if self.create {
            DatastoreKey::read_or_create(&self.path)?
        } else {
            DatastoreKey::read(&self.path)?
        };
        // Two first uses at once read the same file; either copy is the key.
        Ok(Arc::clone(self.key.get_or_init(|| Arc::new(key))))
    }

    /// `plaintext` encrypted with the key.
    pub(crate) fn encrypt(&self, plaintext: &str) -> Result<String> {
        self.get()?
            .encrypt(plaintext)
            .map_err(|e| StorageError::Writer(format!("encrypting a secret: {e}")))
    }
}

/// Typed access to the columns of a row, on any backend whose rows decode text, 64-bit
/// integers and booleans.
pub(crate) trait Columns {
    /// A `TEXT NOT NULL` column.
    fn text(&self, column: &str) -> Result<String>;
    /// A nullable `TEXT` column.
    fn maybe_text(&self, column: &str) -> Result<Option<String>>;
    /// A 64-bit integer column.
    fn int(&self, column: &str) -> Result<i64>;
    /// A boolean column.
    fn flag(&self, column: &str) -> Result<bool>;
}

impl<R> Columns for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }

    fn maybe_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.try_get(column)?)
    }
}

/// Stored JSON text, decoded.
pub(crate) fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt(format!("stored JSON: {e}")))
}

/// A unique violation as [`StorageError::Conflict`] ("`what` already exists"), any other
/// error as it is.
pub(crate) fn conflict(err: sqlx::Error, what: &str) -> StorageError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::Conflict {
            message: format!("{what} already exists"),
            existing_id: None,
        },
        _ => StorageError::Database(err),
    }
}

/// Whether `err` is a unique violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The row's `status` column, which must name a known status.
fn status<S: std::str::FromStr<Err = crate::status::UnknownStatus>>(
    row: &impl Columns,
) -> Result<S> {
    row.text("status")?
        .parse()
        .map_err(|e: crate::status::UnknownStatus| StorageError::Corrupt(e.to_string()))
}

/// The error sqlx gives when an integer column does not fit the type asked for (as SQLite's
/// driver does decoding a `u32` itself), so that every backend words it the same.
fn out_of_range(column: &str, e: std::num::TryFromIntError) -> StorageError {
    StorageError::Database(sqlx::Error::ColumnDecode {
        index: format!("{column:?}"),
        source: Box::new(e),
    })
}

/// A trigger instance from its row. A row that cannot be decoded is reported with its id, so
/// an operator can find it.
pub(crate) fn trigger_instance(row: &impl Columns) -> Result<TriggerInstance> {
    let id = row.text("id")?;
    let decode = || -> Result<TriggerInstance> {
        Ok(TriggerInstance {
            id: id.clone(),
            trigger: row.text("trigger_ref")?,
            trigger_type: row.maybe_text("trigger_type")?,
            payload: json(&row.text("payload")?)?,
            occurrence_time: row.text("occurrence_time")?,
            status: status(row)?,
            trace_id: row.maybe_text("trace_id")?,
            depth: u32::try_from(row.int("depth")?).map_err(|e| out_of_range("depth", e))?,
        })
    };
    decode().map_err(|e| {
        let reason = match e {
            StorageError::Corrupt(reason) => reason,
            other => other.to_string(),
        };
        StorageError::Corrupt(format!("trigger instance {id}: {reason}"))
    })
}

/// A row of the rules engine's queue: its number (column `seq`) and the instance, or why it
/// cannot be read. Only a row whose id or number cannot be read is an error.
pub(crate) fn queued_instance(
    row: &impl Columns,
) -> Result<(i64, std::result::Result<TriggerInstance, Unreadable>)> {
    // The row is fetched: what fails now is decoding it (a payload that is not JSON, text
    // that is not UTF-8, a value of the wrong type). Such a row is handed back as unreadable,
    // as long as its id can be read to mark it.
    let instance = match trigger_instance(row) {
        Ok(instance) => Ok(instance),
        Err(e) => Err(Unreadable {
            id: row.text("id")?,
            reason: e.to_string(),
        }),
    };
    Ok((row.int("seq")?, instance))
}

/// Traces from their rows and the rows of their trigger instances (`trace_id`, `id`,
/// `trigger_ref`, `updated_at`, in the order they were stored), read in one query.
pub(crate) fn traces(rows: &[impl Columns], instances: &[impl Columns]) -> Result<Vec<Trace>> {
    let mut by_trace: std::collections::HashMap<String, Vec<(String, String, String)>> =
        std::collections::HashMap::new();
    for i in instances {
        by_trace.entry(i.text("trace_id")?).or_default().push((
            i.text("id")?,
            i.text("trigger_ref")?,
            i.text("updated_at")?,
        ));
    }
    rows.iter()
        .map(|row| {
            let id = row.text("id")?;
            Ok(Trace {
                trigger_instances: by_trace.remove(&id).unwrap_or_default(),
                trace_tag: row.text("trace_tag")?,
                start_timestamp: row.text("start_timestamp")?,
                id,
            })
        })
        .collect()
}

/// A rule enforcement from its row.
pub(crate) fn enforcement(row: &impl Columns) -> Result<RuleEnforcement> {
    Ok(RuleEnforcement {
        id: row.text("id")?,
        trigger_instance_id: row.text("trigger_instance_id")?,
        execution_id: row.maybe_text("execution_id")?,
        failure_reason: row.maybe_text("failure_reason")?,
        rule_ref: row.text("rule_ref")?,
        rule_id: row.text("rule_id")?,
        rule_uid: row.text("rule_uid")?,
        enforced_at: row.text("enforced_at")?,
        status: status(row)?,
    })
}

/// An execution from its row.
pub(crate) fn execution(row: &impl Columns) -> Result<Execution> {
    Ok(Execution {
        id: row.text("id")?,
        action_ref: row.text("action_ref")?,
        runner: row.text("runner")?,
        status: status(row)?,
        start_timestamp: row.text("start_timestamp")?,
        end_timestamp: row.maybe_text("end_timestamp")?,
        user: row.maybe_text("user_name")?,
        rule_ref: row.maybe_text("rule_ref")?,
        trigger_instance_id: row.maybe_text("trigger_instance_id")?,
        due_at: row.maybe_text("due_at")?,
        run_parameters: json(&row.text("run_parameters")?)?,
        document: json(&row.text("document")?)?,
    })
}

/// An API key from its row.
pub(crate) fn api_key(row: &impl Columns) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.text("id")?,
        user: row.text("user_name")?,
        key_hash: row.text("key_hash")?,
        metadata: json(&row.text("metadata")?)?,
        created_at: row.text("created_at")?,
        enabled: row.flag("enabled")?,
    })
}

/// A token from its row.
pub(crate) fn token(row: &impl Columns) -> Result<Token> {
    Ok(Token {
        id: row.text("id")?,
        user: row.text("user_name")?,
        token: row.text("token")?,
        expiry: row.text("expiry")?,
        metadata: json(&row.text("metadata")?)?,
    })
}

/// A trigger type from its row.
pub(crate) fn trigger_type(row: &impl Columns) -> Result<TriggerType> {
    Ok(TriggerType {
        id: row.text("id")?,
        reference: row.text("ref")?,
        pack: row.text("pack")?,
        name: row.text("name")?,
        description: row.maybe_text("description")?,
        payload_schema: json(&row.text("payload_schema")?)?,
        parameters_schema: json(&row.text("parameters_schema")?)?,
        tags: json(&row.text("tags")?)?,
    })
}

/// A stored trigger from its row.
pub(crate) fn stored_trigger(row: &impl Columns) -> Result<StoredTrigger> {
    Ok(StoredTrigger {
        id: row.text("id")?,
        reference: row.text("ref")?,
        pack: row.text("pack")?,
        name: row.text("name")?,
        trigger_type: row.text("trigger_type")?,
        parameters: json(&row.text("parameters")?)?,
        description: row.maybe_text("description")?,
    })
}

/// An API rule from its row.
pub(crate) fn stored_rule(row: &impl Columns) -> Result<StoredRule> {
    Ok(StoredRule {
        id: row.text("id")?,
        reference: row.text("ref")?,
        pack: row.text("pack")?,
        name: row.text("name")?,
        document: json(&row.text("document")?)?,
        created_by: row.text("created_by")?,
    })
}

/// A datastore pair from its row.
pub(crate) fn kv_pair(row: &impl Columns) -> Result<KvPair> {
    Ok(KvPair {
        name: row.text("name")?,
        value: row.text("value")?,
        secret: row.flag("secret")?,
        expire_timestamp: row.maybe_text("expire_at")?,
    })
}

/// `WHERE` clauses of a trace list (`traces` table): its tag, and the trace of a trigger
/// instance, of an execution (`trace_id` is the SQL that reads an execution document's
/// `context.trace_context.id_`; an execution without one has the trace of its own id, which
/// its action trigger starts) and of a rule's enforcements.
pub(crate) fn push_trace_filters<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    q: &crate::TraceQuery,
    trace_id: &str,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    push_filters(qb, &[("trace_tag", &q.trace_tag)], &[], ("", &None, &None));
    if let Some(ti) = &q.trigger_instance {
        qb.push(" AND id IN (SELECT trace_id FROM trigger_instances WHERE id = ")
            .push_bind(ti.clone())
            .push(")");
    }
    if let Some(execution) = &q.execution {
        qb.push(format!(
            " AND id IN (SELECT COALESCE({trace_id}, id) FROM executions WHERE id = "
        ))
        .push_bind(execution.clone())
        .push(")");
    }
    if let Some(rule) = &q.rule {
        qb.push(" AND id IN (SELECT ti.trace_id FROM trigger_instances ti JOIN rule_enforcements re ON re.trigger_instance_id = ti.id WHERE re.rule_id = ")
            .push_bind(rule.clone())
            .push(")");
    }
}

/// `WHERE` clauses of a list query: `column = value` for each given value, `column IN (...)`
/// for each non-empty list, and `column > after` / `column < before` on a time column.
pub(crate) fn push_filters<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    equal: &[(&str, &Option<String>)],
    any_of: &[(&str, &[String])],
    (time, after, before): (&str, &Option<String>, &Option<String>),
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    qb.push(" WHERE 1=1");
    for (column, value) in equal {
        if let Some(v) = value {
            qb.push(format!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    for (column, values) in any_of {
        if !values.is_empty() {
            qb.push(format!(" AND {column} IN ("));
            let mut list = qb.separated(", ");
            for v in *values {
                list.push_bind(v.clone());
            }
            list.push_unseparated(")");
        }
    }
    if let Some(t) = after {
        qb.push(format!(" AND {time} > ")).push_bind(t.clone());
    }
    if let Some(t) = before {
        qb.push(format!(" AND {time} < ")).push_bind(t.clone());
    }
}

/// The filters of a trigger instance query.
pub(crate) fn push_instance_filters<'a, DB>(qb: &mut QueryBuilder<'a, DB>, q: &TriggerInstanceQuery)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    push_filters(
        qb,
        &[
            ("id", &q.id),
            ("trigger_type", &q.trigger_type),
            ("status", &q.status),
        ],
        &[("trigger_ref", &q.triggers), ("id", &q.ids)],
        ("occurrence_time", &q.timestamp_gt, &q.timestamp_lt),
    );
}

/// The filters of an execution query.
pub(crate) fn push_execution_filters<'a, DB>(qb: &mut QueryBuilder<'a, DB>, q: &ExecutionQuery)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    push_filters(
        qb,
        &[
            ("action_ref", &q.action),
            ("runner", &q.runner),
            ("rule_ref", &q.rule),
            ("trigger_instance_id", &q.trigger_instance),
            ("user_name", &q.user),
        ],
        &[("id", &q.ids), ("status", &q.statuses)],
        ("start_timestamp", &q.timestamp_gt, &q.timestamp_lt),
    );
    if let Some(t) = &q.timestamp_from {
        qb.push(" AND start_timestamp >= ").push_bind(t.clone());
    }
    if let Some(t) = &q.timestamp_to {
        qb.push(" AND start_timestamp <= ").push_bind(t.clone());
    }
}

/// The filters of a rule enforcement query.
pub(crate) fn push_enforcement_filters<'a, DB>(qb: &mut QueryBuilder<'a, DB>, q: &EnforcementQuery)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    push_filters(
        qb,
        &[
            ("id", &q.id),
            ("rule_ref", &q.rule_ref),
            ("rule_id", &q.rule_id),
            ("trigger_instance_id", &q.trigger_instance),
            ("execution_id", &q.execution),
        ],
        &[("trigger_instance_id", &q.trigger_instances)],
        ("enforced_at", &q.enforced_at_gt, &q.enforced_at_lt),
    );
}

/// When the earliest `delayed` execution is due (`Store::next_delayed`).
pub(crate) const NEXT_DELAYED: &str = "SELECT MIN(due_at) FROM executions WHERE status = 'delayed'";

/// The `ORDER BY` of an execution query; `tiebreak` is the insertion-order column.
pub(crate) fn execution_order(ascending: bool, tiebreak: &str) -> String {
    if ascending {
        format!("start_timestamp ASC, action_ref ASC, {tiebreak} ASC")
    } else {
        format!("start_timestamp DESC, action_ref ASC, {tiebreak} DESC")
    }
}

/// The time `ttl` from now, as stored.
pub(crate) fn expires_after(ttl: Duration) -> String {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let at = chrono::Utc::now()
        .checked_add_signed(ttl)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    crate::ids::format_time(at)
}

/// Whether a pair that expires at `expire_at` (never: `None`) is still there now.
pub(crate) fn is_live(expire_at: Option<&str>) -> bool {
    expire_at.is_none_or(|at| at > crate::ids::now().as_str())
}

/// `current` (the unexpired pair; none counts as 0) plus `delta`, or why it cannot be
/// incremented. The value itself is not repeated: the caller may be allowed to write the key
/// but not to read it.
pub(crate) fn incremented(name: &str, current: Option<&KvPair>, delta: i64) -> Result<i64> {
    let value = match current {
        None => 0,
        Some(pair) if pair.secret => {
            return Err(StorageError::Invalid(format!(
                "`{name}` is a secret; only plain values can be incremented"
            )));
        }
        Some(pair) => pair.value.trim().parse::<i64>().map_err(|_| {
            StorageError::Invalid(format!(
                "`{name}` does not hold a decimal integer, so it cannot be incremented"
            ))
        })?,
    };
    value
        .checked_add(delta)
        .ok_or_else(|| StorageError::Invalid(format!("`{name}`: {value} + {delta} overflows")))
}

/// Whether a compare-and-swap of `name` from `expected` to a new value goes ahead, given the
/// current unexpired pair: `Ok(false)` when the value is not the expected one.
///
/// # Errors
///
/// [`StorageError::Invalid`]: the pair is a secret.
pub(crate) fn swaps(name: &str, current: Option<&KvPair>, expected: Option<&str>) -> Result<bool> {
    if current.is_some_and(|pair| pair.secret) {
        return Err(StorageError::Invalid(format!(
            "`{name}` is a secret; compare-and-swap works on plain values only"
        )));
    }
    Ok(current.map(|pair| pair.value.as_str()) == expected)
}

/// The message of a refused [`KvValue::Encrypted`] value.
pub(crate) fn undecryptable(name: &str) -> StorageError {
    StorageError::Invalid(format!(
        "Failed to verify the integrity of the provided value for key \"{name}\". \
         Ensure that the value is encrypted with the correct key and not corrupted."
    ))
}

/// What a datastore write of `value` stores, `(stored, secret)`, when that does not depend on
/// the current pair; `None` for [`KvValue::KeepSecrecy`], which follows the current pair (see
/// [`kept_secrecy`]).
///
/// # Errors
///
/// [`StorageError::Invalid`] for a ciphertext that does not decrypt with the key;
/// [`StorageError::Key`] when the key is needed and unusable.
pub(crate) fn fixed_kv(
    keys: &KeySource,
    name: &str,
    value: KvValue<'_>,
) -> Result<Option<(String, bool)>> {
    Ok(match value {
        KvValue::Plain(v) => Some((v.to_owned(), false)),
        KvValue::Secret(v) => Some((keys.encrypt(v)?, true)),
        KvValue::Encrypted(v) => {
            if keys.get()?.decrypt(v).is_err() {
                return Err(undecryptable(name));
            }
            Some((v.to_owned(), true))
        }
        KvValue::KeepSecrecy(_) => None,
    })
}

/// What a [`KvValue::KeepSecrecy`] write of `plaintext` stores, `(stored, secret)`, given the
/// current unexpired pair: encrypted if that is a secret, plain otherwise.
pub(crate) fn kept_secrecy(
    keys: &KeySource,
    current: Option<&KvPair>,
    plaintext: &str,
) -> Result<(String, bool)> {
    if current.is_some_and(|pair| pair.secret) {
        Ok((keys.encrypt(plaintext)?, true))
    } else {
        Ok((plaintext.to_owned(), false))
    }
}
