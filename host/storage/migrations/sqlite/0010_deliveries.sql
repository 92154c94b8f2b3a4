-- Replay protection (issue 17): the delivery ids senders give (X-GitHub-Delivery, webhook-id,
-- a Stripe event id, Idempotency-Key ...), each with the trace it was stored under, until it
-- expires. The primary key makes the check and the insert one step: of two deliveries with one
-- key, the second finds the first. Expired rows are replaced by a new delivery of the same key,
-- and deleted a few at a time by every commit that stores a delivery.
CREATE TABLE deliveries (
    key         TEXT PRIMARY KEY,
    trace_id    TEXT NOT NULL,
    trace_tag   TEXT NOT NULL,
    expires_at  TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX deliveries_expiry ON deliveries (expires_at);
