-- One record per matched rule per trigger instance, and per failed evaluation.
CREATE TABLE rule_enforcements (
    id                  TEXT PRIMARY KEY,
    trigger_instance_id TEXT NOT NULL,
    execution_id        TEXT,
    failure_reason      TEXT,
    rule_ref            TEXT NOT NULL,
    rule_id             TEXT NOT NULL,
    rule_uid            TEXT NOT NULL,
    enforced_at         TEXT NOT NULL,
    status              TEXT NOT NULL
);
CREATE INDEX rule_enforcements_time ON rule_enforcements (enforced_at);
CREATE INDEX rule_enforcements_instance ON rule_enforcements (trigger_instance_id);
CREATE INDEX rule_enforcements_rule ON rule_enforcements (rule_ref);
