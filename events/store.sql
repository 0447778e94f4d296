-- name: lock
-- One transaction-level lock orders every append in the database: positions are handed out
-- and committed in the same order, so a reader tailing by position never skips a late commit.
-- For the rest of the transaction, plan each statement for its actual arguments and the
-- table's actual size: a generic plan cached while the log was small (existing_ids as a
-- sequential scan) would otherwise stay until the next ANALYZE, slower with every append.
SELECT pg_advisory_xact_lock($1), set_config('plan_cache_mode', 'force_custom_plan', true)

-- name: append
-- Checks, numbers, hashes, inserts and notifies in one round trip, under the append lock;
-- see migrations/0014_append_in_database.sql.
SELECT status, first_position, hashes
FROM events_append($1, $2::text[], $3::text[], $4::integer[], $5::uuid[], $6::text[],
                   $7::text[], $8::text[], $9::integer[], $10::text[], $11::integer[],
                   $12::timestamptz[], $13, $14::json[], $15::json[], $16::bytea[])

-- name: head
SELECT position, hash FROM events ORDER BY position DESC LIMIT 1

-- name: stream_versions
SELECT s.tenant_id, s.stream_id, v.stream_version
FROM unnest($1::text[], $2::text[]) AS s (tenant_id, stream_id)
CROSS JOIN LATERAL (
    SELECT e.stream_version FROM events e
    WHERE e.tenant_id = s.tenant_id AND e.stream_id = s.stream_id
    ORDER BY e.stream_version DESC LIMIT 1
) AS v

-- name: existing_ids
SELECT event_id, position FROM events WHERE event_id = ANY($1::uuid[])

-- name: insert
INSERT INTO events (
    position, event_id, tenant_id, stream_type, stream_id, stream_version, type,
    schema_version, occurred_at, recorded_at, payload, metadata, hash
)
SELECT * FROM unnest(
    $1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::text[],
    $8::integer[], $9::timestamptz[], $10::timestamptz[], $11::json[], $12::json[], $13::bytea[]
)

-- name: notify
SELECT pg_notify('authledger_events', $1::text)

-- name: read_stream
SELECT position, event_id, tenant_id, stream_type, stream_id, stream_version, type,
       schema_version, occurred_at, recorded_at, payload, metadata, hash
FROM events
WHERE tenant_id = $1 AND stream_id = $2 AND stream_version >= $3
ORDER BY stream_version

-- name: read_all
SELECT position, event_id, tenant_id, stream_type, stream_id, stream_version, type,
       schema_version, occurred_at, recorded_at, payload, metadata, hash
FROM events
WHERE position > $1
ORDER BY position
LIMIT $2

-- name: read_positions
SELECT position, event_id, tenant_id, stream_type, stream_id, stream_version, type,
       schema_version, occurred_at, recorded_at, payload, metadata, hash
FROM events
WHERE position = ANY($1::bigint[])
ORDER BY position

-- name: head_position
SELECT coalesce(max(position), 0) FROM events
