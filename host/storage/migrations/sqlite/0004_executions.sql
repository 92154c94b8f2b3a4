-- Action executions. `document` is the execution as the API shows it (StackStorm's
-- ActionExecution); the other columns are copies of its fields for filtering and sorting.
CREATE TABLE executions (
    id                  TEXT PRIMARY KEY,
    action_ref          TEXT NOT NULL,
    runner              TEXT NOT NULL,
    status              TEXT NOT NULL,
    start_timestamp     TEXT NOT NULL,
    end_timestamp       TEXT,
    user_name           TEXT,
    rule_ref            TEXT,
    trigger_instance_id TEXT,
    run_parameters      TEXT NOT NULL,
    document            TEXT NOT NULL
);
CREATE INDEX executions_start ON executions (start_timestamp);
CREATE INDEX executions_status ON executions (status);
CREATE INDEX executions_action ON executions (action_ref);
