-- name: ending_after
-- Credential-ending events of every tenant after a position, up to the head read in the same
-- snapshot (every position up to the head is committed: positions commit in order). The first
-- row is always there: with no such event it carries the head alone.
WITH head AS (SELECT coalesce(max(position), 0) AS head FROM events)
SELECT head.head, e.position, e.event_id, e.tenant_id, e.stream_type, e.stream_id,
       e.stream_version, e.type, e.schema_version, e.occurred_at, e.recorded_at, e.payload,
       e.metadata, e.hash
FROM head
LEFT JOIN LATERAL (
    SELECT * FROM events
    WHERE position > $1 AND position <= head.head AND type = ANY($2::text[])
    ORDER BY position
    LIMIT $3
) e ON true
ORDER BY e.position

-- name: ending_after_of_tenant
-- The same for one tenant ($4), through events_tenant_type_idx.
WITH head AS (SELECT coalesce(max(position), 0) AS head FROM events)
SELECT head.head, e.position, e.event_id, e.tenant_id, e.stream_type, e.stream_id,
       e.stream_version, e.type, e.schema_version, e.occurred_at, e.recorded_at, e.payload,
       e.metadata, e.hash
FROM head
LEFT JOIN LATERAL (
    SELECT * FROM events
    WHERE tenant_id = $4 AND type = ANY($2::text[]) AND position > $1
      AND position <= head.head
    ORDER BY position
    LIMIT $3
) e ON true
ORDER BY e.position

-- name: previous_ending
-- The tenant's last credential-ending event before a position (0: none), one backward index
-- scan per type on events_tenant_type_idx.
SELECT coalesce(max(p.position), 0)
FROM unnest($2::text[]) AS t (type)
CROSS JOIN LATERAL (
    SELECT position FROM events
    WHERE tenant_id = $1 AND type = t.type AND position < $3
    ORDER BY position DESC LIMIT 1
) AS p

-- name: credential_streams
-- The issuing (and re-scoping) events of some credentials, by (tenant, credential id).
SELECT e.position, e.event_id, e.tenant_id, e.stream_type, e.stream_id, e.stream_version,
       e.type, e.schema_version, e.occurred_at, e.recorded_at, e.payload, e.metadata, e.hash
FROM unnest($1::text[], $2::text[]) AS s (tenant_id, stream_id)
JOIN events e ON e.tenant_id = s.tenant_id AND e.stream_id = s.stream_id
WHERE e.type = ANY($3::text[])
ORDER BY e.position
