-- name: snapshot
SELECT version, state FROM registration_snapshots WHERE tenant_id = $1 AND registration_id = $2

-- name: remember
-- Newer states only: two commands finishing out of order never move a snapshot back.
INSERT INTO registration_snapshots AS s (registration_id, tenant_id, version, state)
VALUES ($1, $2, $3, $4)
ON CONFLICT (registration_id) DO UPDATE
SET version = excluded.version, state = excluded.state, written_at = now()
WHERE s.version < excluded.version AND s.tenant_id = excluded.tenant_id

-- name: forget
DELETE FROM registration_snapshots WHERE registration_id = ANY($1::text[])
