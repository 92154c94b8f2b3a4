//! The records Stormhook stores.

use crate::status::{EnforcementStatus, ExecutionStatus, InstanceStatus};

/// A page of results and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many items match the query in all.
    pub total: u64,
}

/// An accepted event: the trace it starts (or joins) and the trigger instances it creates,
/// committed together.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The trace: a new one per accepted request, as StackStorm does. A trace with this id
    /// that is stored already is kept as it is, and the instances join it: a completed
    /// execution's action trigger joins the execution's trace (StackStorm's
    /// `add_or_update_given_trace_db`), in the same group commit as new events.
    pub trace: Trace,
    /// The trigger instances (one per matching trigger), with their payloads already encoded.
    pub instances: Vec<NewInstance>,
    /// The sender's delivery id, when the event is stored only if no delivery with the same
    /// key was stored before it expired (replay protection). The check and the insert are one
    /// step in the store (a unique key): of concurrent deliveries with one key, one is stored.
    pub delivery: Option<DeliveryKey>,
}

/// A delivery's identity for replay protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey {
    /// What identifies the delivery (the server uses `<hook url> <sender's delivery id>`).
    pub key: String,
    /// Until when a second delivery with the key is a duplicate (a store timestamp).
    pub expires_at: String,
}

/// What became of one [`NewEvent`] in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Its trace and trigger instances are stored.
    Stored,
    /// A delivery with the same key was stored earlier (and has not expired): nothing of this
    /// event is stored.
    Duplicate {
        /// The trace of the delivery stored first.
        trace_id: String,
        /// Its trace tag.
        trace_tag: String,
    },
}

/// A trigger instance to store: its payload is JSON text, encoded on the caller's thread, so the
/// single group-commit writer only copies it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInstance {
    /// Object id.
    pub id: String,
    /// The trigger ref.
    pub trigger: String,
    /// The trigger type ref, when known.
    pub trigger_type: Option<String>,
    /// The payload as JSON text (any spacing).
    pub payload: String,
    /// When it happened.
    pub occurrence_time: String,
    /// Its status (`pending` for a new instance).
    pub status: InstanceStatus,
    /// The trace it belongs to.
    pub trace_id: Option<String>,
    /// Plugin-started links leading to it (see [`TriggerInstance::depth`]).
    pub depth: u32,
}

impl NewEvent {
    /// The event of `trace` and `instances`, with the payloads encoded.
    pub fn new(trace: Trace, instances: Vec<TriggerInstance>) -> Self {
        let instances = instances
            .into_iter()
            .map(|i| NewInstance {
                payload: i.payload.to_string(),
                id: i.id,
                trigger: i.trigger,
                trigger_type: i.trigger_type,
                occurrence_time: i.occurrence_time,
                status: i.status,
                trace_id: i.trace_id,
                depth: i.depth,
            })
            .collect();
        Self {
            trace,
            instances,
            delivery: None,
        }
    }
}

/// Something that happened, as rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerInstance {
    /// Object id.
    pub id: String,
    /// The trigger ref (`core.<uuid>` for a webhook trigger, or a trigger type ref).
    pub trigger: String,
    /// The trigger type ref, when known.
    pub trigger_type: Option<String>,
    /// The payload.
    pub payload: serde_json::Value,
    /// When it happened.
    pub occurrence_time: String,
    /// Where the rules engine is with it.
    pub status: InstanceStatus,
    /// The trace it belongs to.
    pub trace_id: Option<String>,
    /// Plugin-started links (`events.emit`, `events.request-execution`) leading to it: 0 for
    /// one a webhook, the API or the server dispatched.
    pub depth: u32,
}

/// Filters and paging for trigger instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerInstanceQuery {
    /// Only this id.
    pub id: Option<String>,
    /// Only these ids (empty: any).
    pub ids: Vec<String>,
    /// Only these trigger refs (empty: any).
    pub triggers: Vec<String>,
    /// Only this trigger type ref.
    pub trigger_type: Option<String>,
    /// Only instances that occurred after this time.
    pub timestamp_gt: Option<String>,
    /// Only instances that occurred before this time.
    pub timestamp_lt: Option<String>,
    /// Only instances with this status.
    pub status: Option<String>,
    /// Page size; `None` is all.
    pub limit: Option<u64>,
    /// Items to skip.
    pub offset: u64,
}

/// A trace: what one event caused.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Object id.
    pub id: String,
    /// The user's tag, or a generated one.
    pub trace_tag: String,
    /// When the trace started.
    pub start_timestamp: String,
    /// The trigger instances of this trace: `(id, trigger ref, updated_at)`.
    pub trigger_instances: Vec<(String, String, String)>,
}

/// Filters and paging for traces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceQuery {
    /// Only this tag.
    pub trace_tag: Option<String>,
    /// Only traces holding this trigger instance.
    pub trigger_instance: Option<String>,
    /// Only the trace of this execution (`context.trace_context.id_`).
    pub execution: Option<String>,
    /// Only traces one of whose trigger instances this rule (id) was enforced for.
    pub rule: Option<String>,
    /// Oldest first (`sort_asc=True`); newest first otherwise.
    pub ascending: bool,
    /// Page size; `None` is all.
    pub limit: Option<u64>,
    /// Items to skip.
    pub offset: u64,
}

/// An API key. Only its hash is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Object id.
    pub id: String,
    /// The user the key authenticates as.
    pub user: String,
    /// Hex SHA-512 of the salted key (StackStorm's `key_hash`).
    pub key_hash: String,
    /// Free-form metadata.
    pub metadata: serde_json::Value,
    /// When it was created.
    pub created_at: String,
    /// Disabled keys are refused.
    pub enabled: bool,
}

/// An expiring token.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Object id.
    pub id: String,
    /// The user the token authenticates as.
    pub user: String,
    /// The bearer value.
    pub token: String,
    /// When it stops being accepted.
    pub expiry: String,
    /// Free-form metadata.
    pub metadata: serde_json::Value,
}

/// A trigger type: the kind of event, and the schema of its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerType {
    /// Object id.
    pub id: String,
    /// `<pack>.<name>`.
    pub reference: String,
    /// The pack.
    pub pack: String,
    /// The name.
    pub name: String,
    /// A description.
    pub description: Option<String>,
    /// JSON schema of the payload (`{}`: anything).
    pub payload_schema: serde_json::Value,
    /// JSON schema of trigger parameters.
    pub parameters_schema: serde_json::Value,
    /// Tags.
    pub tags: serde_json::Value,
}

/// A trigger created through `POST /triggers` (StackStorm's `TriggerDB`): a trigger type with
/// parameters, under a name of its own. The triggers rules make, and the shadow trigger of a
/// trigger type without parameters, are derived from them and not stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrigger {
    /// Object id.
    pub id: String,
    /// `<pack>.<name>`: unique.
    pub reference: String,
    /// The pack.
    pub pack: String,
    /// The name.
    pub name: String,
    /// The trigger type's ref.
    pub trigger_type: String,
    /// The trigger parameters (an object).
    pub parameters: serde_json::Value,
    /// A description.
    pub description: Option<String>,
}

/// A rule created through the API. The document is the rule as the API shows it, without the
/// computed fields.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    /// Object id.
    pub id: String,
    /// `<pack>.<name>`.
    pub reference: String,
    /// The pack.
    pub pack: String,
    /// The name.
    pub name: String,
    /// The rule document (StackStorm's schema).
    pub document: serde_json::Value,
    /// Who created it.
    pub created_by: String,
}

/// What happened when a rule met a trigger instance.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEnforcement {
    /// Object id.
    pub id: String,
    /// The trigger instance.
    pub trigger_instance_id: String,
    /// The execution the rule caused, once executions exist.
    pub execution_id: Option<String>,
    /// Why the enforcement failed.
    pub failure_reason: Option<String>,
    /// The rule's ref.
    pub rule_ref: String,
    /// The rule's id.
    pub rule_id: String,
    /// The rule's uid.
    pub rule_uid: String,
    /// When.
    pub enforced_at: String,
    /// `succeeded` or `failed`.
    pub status: EnforcementStatus,
}

/// Filters and paging for rule enforcements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnforcementQuery {
    /// Only this id.
    pub id: Option<String>,
    /// Only this rule.
    pub rule_ref: Option<String>,
    /// Only this rule id.
    pub rule_id: Option<String>,
    /// Only this trigger instance.
    pub trigger_instance: Option<String>,
    /// Only these trigger instances (empty: any).
    pub trigger_instances: Vec<String>,
    /// Only this execution.
    pub execution: Option<String>,
    /// Only after this time.
    pub enforced_at_gt: Option<String>,
    /// Only before this time.
    pub enforced_at_lt: Option<String>,
    /// Page size; `None` is all.
    pub limit: Option<u64>,
    /// Items to skip.
    pub offset: u64,
}

/// A stored trigger instance that cannot be read back (its payload is not JSON: the disk was
/// corrupted or something else wrote the row). The rules engine marks it `processing_failed`
/// and goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// The trigger instance.
    pub id: String,
    /// Why it cannot be read.
    pub reason: String,
}

/// What the rules engine decided for one trigger instance: its final status, its enforcements
/// and the executions they requested, stored together.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedInstance {
    /// The trigger instance.
    pub id: String,
    /// `processed` or `processing_failed`.
    pub status: InstanceStatus,
    /// One per matched rule and per failed evaluation.
    pub enforcements: Vec<RuleEnforcement>,
    /// The executions the matched rules requested.
    pub executions: Vec<Execution>,
}

/// An action execution. `document` is the whole record as the API shows it; the other fields
/// are copies of some of its fields, kept for filtering and sorting.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Object id.
    pub id: String,
    /// The action's ref.
    pub action_ref: String,
    /// The runner type's name.
    pub runner: String,
    /// Where it is in its life.
    pub status: ExecutionStatus,
    /// When it was requested.
    pub start_timestamp: String,
    /// When it completed.
    pub end_timestamp: Option<String>,
    /// `context.user`.
    pub user: Option<String>,
    /// The rule that requested it.
    pub rule_ref: Option<String>,
    /// The trigger instance that caused it.
    pub trigger_instance_id: Option<String>,
    /// When a `delayed` execution is due to be requested (its start plus its `delay`), in the
    /// [`crate::ids`] format; `None` for an execution requested without a delay.
    pub due_at: Option<String>,
    /// What the runner gets: the rendered parameters with every default filled in (the
    /// document shows only the parameters the caller gave).
    pub run_parameters: serde_json::Value,
    /// The execution as the API shows it.
    pub document: serde_json::Value,
}

/// Filters, order and paging for executions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionQuery {
    /// Only these ids (empty: any).
    pub ids: Vec<String>,
    /// Only these statuses (empty: any).
    pub statuses: Vec<String>,
    /// Only this action ref.
    pub action: Option<String>,
    /// Only this runner.
    pub runner: Option<String>,
    /// Only executions of this rule (ref).
    pub rule: Option<String>,
    /// Only executions caused by this trigger instance.
    pub trigger_instance: Option<String>,
    /// Only executions of this user.
    pub user: Option<String>,
    /// Only executions that started after this time.
    pub timestamp_gt: Option<String>,
    /// Only executions that started before this time.
    pub timestamp_lt: Option<String>,
    /// Only executions that started at or after this time.
    pub timestamp_from: Option<String>,
    /// Only executions that started at or before this time.
    pub timestamp_to: Option<String>,
    /// Only executions whose documents match all of these.
    pub fields: Vec<FieldFilter>,
    /// Only executions whose context names one of these traces (`context.trace_context.id_`;
    /// empty: any).
    pub traces: Vec<String>,
    /// Oldest first (default: newest first).
    pub ascending: bool,
    /// Page size; `None` is all.
    pub limit: Option<u64>,
    /// Items to skip.
    pub offset: u64,
}

/// A condition on a field of an execution's document (as the API shows it before falsy
/// fields are dropped): StackStorm's filters on document fields and its `filter=field:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFilter {
    /// The keys leading to the field (`["rule", "name"]`).
    pub path: Vec<String>,
    /// The value it has: a string equal to it, or a number written so. `None`: the field is
    /// absent (or JSON `null`).
    pub value: Option<String>,
}

/// A datastore pair (StackStorm's `st2kv`, system scope), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    /// The key.
    pub name: String,
    /// The value as stored: for a secret, the ciphertext (see [`crate::crypto`]).
    pub value: String,
    /// Whether the value is a secret, encrypted with the datastore key.
    pub secret: bool,
    /// When the pair expires (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), if it was stored with a TTL.
    /// Expired pairs are invisible to every call.
    pub expire_timestamp: Option<String>,
}

/// The value a datastore write stores, and how.
#[derive(Clone, Copy)]
pub enum KvValue<'a> {
    /// Plain text. A pair that was a secret becomes a plain one (a StackStorm `PUT` replaces
    /// the whole pair).
    Plain(&'a str),
    /// Plain text that the store encrypts with the datastore key and keeps as a secret.
    Secret(&'a str),
    /// A ciphertext already made with the datastore key (StackStorm's `encrypted: true`, as
    /// `st2 key load` sends exported secrets): the store checks that it decrypts, then keeps it
    /// as it is, as a secret.
    Encrypted(&'a str),
    /// Plain text, kept the way the pair's current (unexpired) value is: encrypted if that is a
    /// secret, plain otherwise (a plugin's `set`, which cannot turn a secret into plain text).
    KeepSecrecy(&'a str),
}

impl std::fmt::Debug for KvValue<'_> {
    /// Names the variant only: the value may be a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Plain(..)",
            Self::Secret(_) => "Secret(..)",
            Self::Encrypted(_) => "Encrypted(..)",
            Self::KeepSecrecy(_) => "KeepSecrecy(..)",
        })
    }
}

/// This node's place among the nodes that share one store (the PostgreSQL backend). A store of
/// one node (SQLite) has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This node's id: the owner recorded on the work it holds (`<hostname>-<pid>-<random>`,
    /// new at every start, so a restarted node never mistakes its old claims for live ones).
    pub node_id: String,
    /// How long a claim lasts unless renewed. A node renews its claims every third of it; the
    /// claims of a node that stopped renewing (it died) expire, and other nodes take the work.
    pub lease: std::time::Duration,
}

/// A change every node must see, carried between nodes by the store (PostgreSQL:
/// `LISTEN`/`NOTIFY` on the channel `stormhook`). A node receives its own changes too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An API rule or trigger was created, updated or deleted: reload the API rules (and the
    /// stored triggers they use).
    Rules,
    /// An API key was changed or deleted (or a token revoked): forget cached credentials.
    Credentials,
    /// The execution with this id moved to `canceling`: the node that runs it stops it.
    Cancel(String),
    /// New work was stored (trigger instances, requested executions): idle workers look now.
    Work,
}

impl Change {
    /// The notification payload: `rules`, `credentials`, `cancel:<id>` or `work`.
    pub fn encode(&self) -> String {
        match self {
            Self::Rules => "rules".into(),
            Self::Credentials => "credentials".into(),
            Self::Cancel(id) => format!("cancel:{id}"),
            Self::Work => "work".into(),
        }
    }

    /// The change a payload of [`Change::encode`] names; `None` for anything else.
    pub fn decode(payload: &str) -> Option<Self> {
        match payload {
            "rules" => Some(Self::Rules),
            "credentials" => Some(Self::Credentials),
            "work" => Some(Self::Work),
            other => other
                .strip_prefix("cancel:")
                .filter(|id| !id.is_empty())
                .map(|id| Self::Cancel(id.to_owned())),
        }
    }
}

/// What retention purges (StackStorm's garbage collector has the same knobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retained {
    /// Trigger instances that are no longer `pending` or `processing`, by `occurrence_time`.
    TriggerInstances,
    /// Traces, by `start_timestamp`, that no kept trigger instance refers to.
    Traces,
    /// Rule enforcements, by `enforced_at`.
    Enforcements,
    /// Executions in a completed status, by `end_timestamp` (every completed execution has
    /// one).
    Executions,
}

impl Retained {
    /// Every kind, in the order a purge pass takes them (instances before their traces).
    pub const ALL: [Self; 4] = [
        Self::TriggerInstances,
        Self::Traces,
        Self::Enforcements,
        Self::Executions,
    ];

    /// The name used in flags and logs: `trigger_instances`, `traces`, `enforcements`,
    /// `executions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TriggerInstances => "trigger_instances",
            Self::Traces => "traces",
            Self::Enforcements => "enforcements",
            Self::Executions => "executions",
        }
    }
}

/// What [`crate::Store::renew_leases`] found among this node's claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renewal {
    /// Executions this node holds that another node moved to `canceling`.
    pub canceling: Vec<String>,
    /// Executions this node claimed (`scheduled` or `running` under its lease) that it does
    /// not hold and that were not renewed for half a lease: the claim committed but its answer
    /// was lost with a broken connection, so this node never ran them.
    pub unheld: Vec<String>,
}

/// Which runners' executions a claim takes ([`crate::Store::claim_requested`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runners<'a> {
    /// Every runner's.
    Any,
    /// Only these runners'.
    Only(&'a [&'a str]),
    /// Every runner's but these.
    Except(&'a [&'a str]),
}

impl Runners<'_> {
    /// Whether an execution of `runner` is taken.
    pub fn take(&self, runner: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(list) => list.contains(&runner),
            Self::Except(list) => !list.contains(&runner),
        }
    }

    /// The SQL condition on the `runner` column (runner names are the server's own, never a
    /// user's, so they are written as literals).
    pub(crate) fn sql(&self) -> String {
        let list = |names: &[&str]| {
            names
                .iter()
                .map(|n| format!("'{}'", n.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Self::Any => "TRUE".to_owned(),
            Self::Only([]) => "FALSE".to_owned(),
            Self::Except([]) => "TRUE".to_owned(),
            Self::Only(names) => format!("runner IN ({})", list(names)),
            Self::Except(names) => format!("runner NOT IN ({})", list(names)),
        }
    }
}
