-- One enforcement per (trigger instance, rule): evaluating an instance again (after a crash)
-- must not record a second one, nor request its action twice. Older stores could not hold
-- duplicates either (an instance's enforcements commit with its new status), but keep the
-- first of any so the index can be built.
DELETE FROM rule_enforcements WHERE rowid NOT IN (
    SELECT MIN(rowid) FROM rule_enforcements GROUP BY trigger_instance_id, rule_ref
);
DROP INDEX rule_enforcements_instance;
CREATE UNIQUE INDEX rule_enforcements_key ON rule_enforcements (trigger_instance_id, rule_ref);
-- Retention deletes finished executions by age.
CREATE INDEX executions_end ON executions (end_timestamp);
