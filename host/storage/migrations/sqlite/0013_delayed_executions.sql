-- When a `delayed` execution (one requested with StackStorm's `delay`) is due to be requested:
-- its start time plus the delay, in the stored timestamp format. The executors promote those
-- due, earliest first, and sleep until the earliest of the others.
ALTER TABLE executions ADD COLUMN due_at TEXT;
CREATE INDEX executions_delayed ON executions (due_at) WHERE status = 'delayed';
