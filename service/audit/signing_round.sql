-- name: lock
-- One signer at a time (any number of worker processes may run): a round reads the last
-- checkpoint, walks the chain from it and signs, under this transaction-level lock.
SELECT pg_advisory_xact_lock($1)

-- name: last
SELECT position, chain_hash, signed_at FROM chain_checkpoints ORDER BY position DESC LIMIT 1

-- name: head
SELECT coalesce(max(position), 0) FROM events

-- name: recorded_at
SELECT recorded_at FROM events WHERE position = $1

-- name: hashes
SELECT position, hash FROM events WHERE position = ANY($1::bigint[])

-- name: insert
INSERT INTO chain_checkpoints (position, chain_hash, kid, signed_at, jws)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (position) DO NOTHING

-- name: insert_key
INSERT INTO chain_checkpoint_keys (kid, public_jwk, first_used)
VALUES ($1, $2::text::json, $3)
ON CONFLICT (kid) DO NOTHING

-- name: hash_at
SELECT hash FROM events WHERE position = $1

-- name: signed_after
-- The checkpoints above the newest published one, with the hash the log holds there now
-- (NULL: the position is gone), to publish in order (service/audit/publisher.py).
SELECT c.position, c.jws, e.hash
FROM chain_checkpoints c LEFT JOIN events e ON e.position = c.position
WHERE c.position > $1
ORDER BY c.position
