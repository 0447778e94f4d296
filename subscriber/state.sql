-- name: schema
-- A subscriber's local state (SQLite): the revoked set and where in the feed it got to.
CREATE TABLE IF NOT EXISTS revoked (
    credential_id      TEXT    PRIMARY KEY,
    token_hash_prefix  TEXT    NOT NULL,
    jti                TEXT,
    registration_id    TEXT,
    user_id            TEXT,
    reason             TEXT    NOT NULL,
    effective_at       TEXT    NOT NULL,
    position           INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    feed      TEXT    NOT NULL,  -- stream, subject and service this state follows
    position  INTEGER,           -- every revocation up to here is held; NULL: not known yet
    seq       INTEGER NOT NULL   -- the last stream sequence read
);
-- Security Event Tokens taken by the webhook receiver (subscriber/webhook.py), by `jti`
-- (RFC 8935 §2.2: a receiver detects a redelivered SET by it). Unused by the NATS follower.
CREATE TABLE IF NOT EXISTS received_sets (
    jti            TEXT PRIMARY KEY,
    txn            TEXT,             -- the log event's id (the same for every subscriber)
    credential_id  TEXT NOT NULL,
    received_at    TEXT NOT NULL
);

-- name: load_checkpoint
SELECT feed, position, seq FROM checkpoint WHERE id = 1

-- name: save_checkpoint
INSERT INTO checkpoint (id, feed, position, seq) VALUES (1, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET feed = excluded.feed, position = excluded.position,
                               seq = excluded.seq

-- name: insert_revoked
INSERT INTO revoked (credential_id, token_hash_prefix, jti, registration_id, user_id, reason,
                     effective_at, position)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (credential_id) DO NOTHING

-- name: load_revoked
SELECT credential_id, token_hash_prefix, jti FROM revoked

-- name: seen_set
SELECT 1 FROM received_sets WHERE jti = ?

-- name: insert_set
INSERT INTO received_sets (jti, txn, credential_id, received_at) VALUES (?, ?, ?, ?)
ON CONFLICT (jti) DO NOTHING

-- name: complete_revoked
-- A row a SET made (no token hash known: '') completed by the authoritative entry.
UPDATE revoked SET token_hash_prefix = ?, jti = coalesce(jti, ?),
                   registration_id = coalesce(registration_id, ?),
                   user_id = coalesce(user_id, ?), reason = ?, effective_at = ?, position = ?
WHERE credential_id = ? AND token_hash_prefix = ''
