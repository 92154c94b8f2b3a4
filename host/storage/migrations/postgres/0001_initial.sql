-- Stormhook's schema on PostgreSQL, for several nodes sharing one store. It holds what the
-- SQLite migrations 0001..0008 hold, plus the claims of the nodes (owner and lease).
--
-- Timestamps are RFC 3339 text in UTC with microseconds (YYYY-MM-DDTHH:MM:SS.ffffffZ), as on
-- SQLite, so text order is time order and the records are the same on both backends. Text
-- that is compared or sorted uses the "C" collation: byte order, as on SQLite, whatever the
-- database's default collation. JSON columns hold JSON text (not JSONB, which reorders object
-- keys: the API returns documents as they were stored). `seq` columns give insertion order
-- (SQLite's rowid). Leases are server time (`now()`), so the nodes' clocks need not agree.

CREATE TABLE traces (
    id              TEXT PRIMARY KEY,
    seq             BIGSERIAL NOT NULL,
    trace_tag       TEXT COLLATE "C" NOT NULL,
    start_timestamp TEXT COLLATE "C" NOT NULL
);
CREATE INDEX traces_tag ON traces (trace_tag);
CREATE INDEX traces_start ON traces (start_timestamp);

-- `owner` and `lease_until`: the node whose rules engine claimed the instance (`processing`)
-- and until when; past it, any node claims it again.
CREATE TABLE trigger_instances (
    id              TEXT PRIMARY KEY,
    seq             BIGSERIAL NOT NULL,
    trigger_ref     TEXT COLLATE "C" NOT NULL,
    trigger_type    TEXT COLLATE "C",
    payload         TEXT NOT NULL,
    occurrence_time TEXT COLLATE "C" NOT NULL,
    status          TEXT NOT NULL,
    trace_id        TEXT REFERENCES traces (id),
    updated_at      TEXT NOT NULL,
    depth           BIGINT NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until     TIMESTAMPTZ
);
CREATE INDEX trigger_instances_time ON trigger_instances (occurrence_time);
CREATE INDEX trigger_instances_trigger ON trigger_instances (trigger_ref);
CREATE INDEX trigger_instances_trace ON trigger_instances (trace_id);
-- The rules engines' claim, in insertion order. Only unfinished instances are in it, so it
-- stays small however many are kept.
CREATE INDEX trigger_instances_claimable ON trigger_instances (seq)
    WHERE status IN ('pending', 'processing');
CREATE INDEX trigger_instances_owner ON trigger_instances (owner)
    WHERE status = 'processing';

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    seq        BIGSERIAL NOT NULL,
    user_name  TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    metadata   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    enabled    BOOLEAN NOT NULL
);

CREATE TABLE tokens (
    id        TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    token     TEXT NOT NULL UNIQUE,
    expiry    TEXT NOT NULL,
    metadata  TEXT NOT NULL
);

CREATE TABLE trigger_types (
    id                TEXT PRIMARY KEY,
    ref               TEXT COLLATE "C" NOT NULL UNIQUE,
    pack              TEXT NOT NULL,
    name              TEXT NOT NULL,
    description       TEXT,
    payload_schema    TEXT NOT NULL,
    parameters_schema TEXT NOT NULL,
    tags              TEXT NOT NULL
);

-- The datastore. `expire_at` in the ids format (StackStorm's `ttl`); a secret's value is the
-- ciphertext, made with the datastore key every node shares.
CREATE TABLE kv (
    name      TEXT COLLATE "C" PRIMARY KEY,
    value     TEXT NOT NULL,
    secret    BOOLEAN NOT NULL DEFAULT false,
    expire_at TEXT COLLATE "C"
);
CREATE INDEX kv_expire_at ON kv (expire_at) WHERE expire_at IS NOT NULL;

-- Rules created through the API (rules in pack files live in each node's packs folder).
CREATE TABLE rules (
    id         TEXT PRIMARY KEY,
    ref        TEXT COLLATE "C" NOT NULL UNIQUE,
    pack       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    document   TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- One record per matched rule per trigger instance, and per failed evaluation. The unique key
-- keeps a second evaluation (after a lease expired) from recording a second enforcement.
CREATE TABLE rule_enforcements (
    id                  TEXT PRIMARY KEY,
    seq                 BIGSERIAL NOT NULL,
    trigger_instance_id TEXT NOT NULL,
    execution_id        TEXT,
    failure_reason      TEXT,
    rule_ref            TEXT COLLATE "C" NOT NULL,
    rule_id             TEXT NOT NULL,
    rule_uid            TEXT NOT NULL,
    enforced_at         TEXT COLLATE "C" NOT NULL,
    status              TEXT NOT NULL
);
CREATE INDEX rule_enforcements_time ON rule_enforcements (enforced_at);
CREATE INDEX rule_enforcements_rule ON rule_enforcements (rule_ref);
CREATE UNIQUE INDEX rule_enforcements_key ON rule_enforcements (trigger_instance_id, rule_ref);

-- Action executions. `document` is the execution as the API shows it (StackStorm's
-- ActionExecution); the other columns are copies of its fields for filtering and sorting.
-- `owner` and `lease_until`: the node that runs it (`scheduled`, `running`, `canceling`) and
-- until when; past it, the execution is an orphan another node settles.
CREATE TABLE executions (
    id                  TEXT PRIMARY KEY,
    seq                 BIGSERIAL NOT NULL,
    action_ref          TEXT COLLATE "C" NOT NULL,
    runner              TEXT NOT NULL,
    status              TEXT NOT NULL,
    start_timestamp     TEXT COLLATE "C" NOT NULL,
    end_timestamp       TEXT COLLATE "C",
    user_name           TEXT,
    rule_ref            TEXT,
    trigger_instance_id TEXT,
    run_parameters      TEXT NOT NULL,
    document            TEXT NOT NULL,
    owner               TEXT,
    lease_until         TIMESTAMPTZ
);
CREATE INDEX executions_start ON executions (start_timestamp);
CREATE INDEX executions_status ON executions (status);
CREATE INDEX executions_action ON executions (action_ref);
-- Retention deletes finished executions by age.
CREATE INDEX executions_end ON executions (end_timestamp);
-- The executors' claim, oldest first.
CREATE INDEX executions_requested ON executions (start_timestamp, action_ref, seq)
    WHERE status = 'requested';
CREATE INDEX executions_owner ON executions (owner) WHERE owner IS NOT NULL;
