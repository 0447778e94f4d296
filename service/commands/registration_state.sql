-- name: load
-- The snapshot (NULLs when there is none) beside each event recorded after it (NULLs when
-- there is none): one round trip for what `snapshot` and a stream read took two.
SELECT s.version AS snapshot_version, s.state,
       e.position, e.event_id, e.tenant_id, e.stream_type, e.stream_id, e.stream_version,
       e.type, e.schema_version, e.occurred_at, e.recorded_at, e.payload, e.metadata, e.hash
FROM (SELECT 1) AS one
LEFT JOIN registration_snapshots AS s ON s.tenant_id = $1 AND s.registration_id = $2
LEFT JOIN LATERAL (  -- lateral: the snapshot's version bounds the index scan itself
    SELECT * FROM events
    WHERE tenant_id = $1 AND stream_id = $2 AND stream_version > coalesce(s.version, 0)
    OFFSET 0  -- kept a subquery (not pulled up into a join), so the bound stays an index bound
) AS e ON true
ORDER BY e.stream_version

-- name: remember
-- Newer states only: two commands finishing out of order never move a snapshot back.
INSERT INTO registration_snapshots AS s (registration_id, tenant_id, version, state)
VALUES ($1, $2, $3, $4)
ON CONFLICT (registration_id) DO UPDATE
SET version = excluded.version, state = excluded.state, written_at = now()
WHERE s.version < excluded.version AND s.tenant_id = excluded.tenant_id

-- name: forget
DELETE FROM registration_snapshots WHERE registration_id = ANY($1::text[])
