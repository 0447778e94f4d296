-- name: lock
-- A session lock, held on a dedicated connection for as long as the relay runs: a second
-- relay (another process) blocks here until the first one stops or its session dies.
SELECT pg_advisory_lock(hashtextextended('authledger.checkpoint:' || $1, 0))

-- name: unlock
SELECT pg_advisory_unlock(hashtextextended('authledger.checkpoint:' || $1, 0))

-- name: load_checkpoint
SELECT position FROM checkpoints WHERE name = $1

-- name: save_checkpoint
-- Written on the lock's own connection: if that session died (and the lock with it), the
-- write fails and the relay starts over instead of racing a successor.
INSERT INTO checkpoints (name, position, updated_at) VALUES ($1, $2, now())
ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at

-- name: ping
SELECT 1
