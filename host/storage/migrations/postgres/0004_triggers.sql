-- Triggers created through `POST /triggers`: a trigger type with parameters, under a name of
-- their own (StackStorm's `TriggerDB`). Shadow triggers and the triggers rules make are
-- derived from trigger types and rules, not stored.
CREATE TABLE triggers (
    id           TEXT PRIMARY KEY,
    ref          TEXT COLLATE "C" NOT NULL UNIQUE,
    pack         TEXT NOT NULL,
    name         TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    parameters   TEXT NOT NULL,
    description  TEXT
);
