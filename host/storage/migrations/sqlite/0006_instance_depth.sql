-- How many plugin-started links (events.emit, events.request-execution) lead to a trigger
-- instance: 0 for one a webhook or the server dispatched. Bounds chains of plugins.
ALTER TABLE trigger_instances ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
