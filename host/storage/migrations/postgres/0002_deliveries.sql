-- Replay protection (issue 17): the delivery ids senders give (X-GitHub-Delivery, webhook-id,
-- a Stripe event id, Idempotency-Key ...), each with the trace it was stored under, until it
-- expires. The primary key makes the check and the insert one step, across nodes too: a
-- second node's insert of the same key waits for the first's transaction, then finds its row.
CREATE TABLE deliveries (
    key         TEXT PRIMARY KEY,
    trace_id    TEXT NOT NULL,
    trace_tag   TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX deliveries_expiry ON deliveries (expires_at);
