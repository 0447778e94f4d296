-- name: lock
-- A session lock, held on a dedicated connection for as long as a JetStream publisher (the
-- relay, the revocation feed) runs: a second one of the same checkpoint (another process)
-- blocks here until the first one stops or its session dies.
SELECT pg_advisory_lock(hashtextextended('authledger.checkpoint:' || $1, 0))

-- name: unlock
SELECT pg_advisory_unlock(hashtextextended('authledger.checkpoint:' || $1, 0))

-- name: ping
-- On idle: fails fast if the lock's session died.
SELECT 1
