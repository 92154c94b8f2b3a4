-- Datastore secrets (the value is the ciphertext, made with the datastore key) and expiring
-- pairs (StackStorm's `ttl`: `expire_at` in the ids format, which sorts as text).
ALTER TABLE kv ADD COLUMN secret INTEGER NOT NULL DEFAULT 0;
ALTER TABLE kv ADD COLUMN expire_at TEXT;
CREATE INDEX kv_expire_at ON kv (expire_at) WHERE expire_at IS NOT NULL;
