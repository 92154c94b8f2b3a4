-- Stormhook's first schema. Timestamps are RFC 3339 text in UTC with microseconds
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ), so text order is time order. JSON columns hold JSON text.
-- SQLite's implicit rowid gives insertion order (API keys are listed in creation order).

CREATE TABLE traces (
    id              TEXT PRIMARY KEY,
    trace_tag       TEXT NOT NULL,
    start_timestamp TEXT NOT NULL
);
CREATE INDEX traces_tag ON traces (trace_tag);
CREATE INDEX traces_start ON traces (start_timestamp);

CREATE TABLE trigger_instances (
    id              TEXT PRIMARY KEY,
    trigger_ref     TEXT NOT NULL,
    trigger_type    TEXT,
    payload         TEXT NOT NULL,
    occurrence_time TEXT NOT NULL,
    status          TEXT NOT NULL,
    trace_id        TEXT REFERENCES traces (id),
    updated_at      TEXT NOT NULL
);
CREATE INDEX trigger_instances_time ON trigger_instances (occurrence_time);
CREATE INDEX trigger_instances_trigger ON trigger_instances (trigger_ref);
CREATE INDEX trigger_instances_status ON trigger_instances (status);
CREATE INDEX trigger_instances_trace ON trigger_instances (trace_id);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    metadata   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    enabled    INTEGER NOT NULL
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
    ref               TEXT NOT NULL UNIQUE,
    pack              TEXT NOT NULL,
    name              TEXT NOT NULL,
    description       TEXT,
    payload_schema    TEXT NOT NULL,
    parameters_schema TEXT NOT NULL,
    tags              TEXT NOT NULL
);

CREATE TABLE kv (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
