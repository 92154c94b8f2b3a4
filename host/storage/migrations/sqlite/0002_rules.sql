-- Rules created through the API (rules in pack files live in the packs folder).
CREATE TABLE rules (
    id         TEXT PRIMARY KEY,
    ref        TEXT NOT NULL UNIQUE,
    pack       TEXT NOT NULL,
    name       TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
