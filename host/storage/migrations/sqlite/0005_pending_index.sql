-- Only pending trigger instances are looked up by status (the rules engine's claim), so only
-- they are indexed by it: every accepted instance still adds an entry, but processed ones leave
-- the index instead of growing it forever.
DROP INDEX trigger_instances_status;
CREATE INDEX trigger_instances_pending ON trigger_instances (status) WHERE status = 'pending';
