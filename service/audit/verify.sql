-- name: framed
-- The rows of (after, until], each with its stored hash and its content framed exactly as
-- events.hashchain.framed_content frames it: every field as 4-byte big-endian length || bytes,
-- in the order position, event_id, tenant_id, stream_type, stream_id, stream_version, type,
-- schema_version, occurred_at, recorded_at, payload, metadata. Integers as decimal text,
-- timestamps as ISO 8601 in UTC with microseconds (32 bytes), the uuid as its 16 bytes,
-- json as the stored text. `textsend` gives a text's bytes in the client encoding, which
-- asyncpg always sets to UTF-8 (cheaper than convert_to). Only built-in functions: Postgres
-- lays the bytes out (on its own core, beside the verifier's), the verifier hashes them
-- (tests/integration/test_audit_verify.py checks the two framings agree).
SELECT e.position, e.hash,
       int4send(octet_length(e.pos)) || e.pos
       || '\x00000010'::bytea || uuid_send(e.event_id)
       || int4send(octet_length(e.tenant)) || e.tenant
       || int4send(octet_length(e.stype)) || e.stype
       || int4send(octet_length(e.sid)) || e.sid
       || int4send(octet_length(e.ver)) || e.ver
       || int4send(octet_length(e.etype)) || e.etype
       || int4send(octet_length(e.schema)) || e.schema
       || '\x00000020'::bytea || e.occurred
       || '\x00000020'::bytea || e.recorded
       || int4send(octet_length(e.payload)) || e.payload
       || int4send(octet_length(e.metadata)) || e.metadata AS framed
FROM (
    SELECT position, hash, event_id,
           textsend(position::text) AS pos,
           textsend(tenant_id) AS tenant,
           textsend(stream_type) AS stype,
           textsend(stream_id) AS sid,
           textsend(stream_version::text) AS ver,
           textsend(type) AS etype,
           textsend(schema_version::text) AS schema,
           textsend(to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
               AS occurred,
           textsend(to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
               AS recorded,
           textsend(payload::text) AS payload,
           textsend(metadata::text) AS metadata
    FROM events
    WHERE position > $1 AND position <= $2
    ORDER BY position
    LIMIT $3
) e

-- name: rows_between
-- Whole rows near a break, to tell an edited row from a moved one.
SELECT position, event_id, tenant_id, stream_type, stream_id, stream_version, type,
       schema_version, occurred_at, recorded_at, payload, metadata, hash
FROM events
WHERE position >= $1 AND position <= $2
ORDER BY position

-- name: head
SELECT coalesce(max(position), 0) FROM events

-- name: checkpoints
SELECT position, chain_hash, kid, signed_at, jws FROM chain_checkpoints ORDER BY position

-- name: checkpoint_keys
SELECT kid, public_jwk::text AS public_jwk FROM chain_checkpoint_keys ORDER BY first_used, kid

-- name: checkpoints_around
-- For each position: the last checkpoint before it and the first at or after it.
SELECT DISTINCT c.position, c.chain_hash, c.kid, c.signed_at, c.jws
FROM unnest($1::bigint[]) AS p (pos)
CROSS JOIN LATERAL (
    (SELECT * FROM chain_checkpoints WHERE position < p.pos ORDER BY position DESC LIMIT 1)
    UNION ALL
    (SELECT * FROM chain_checkpoints WHERE position >= p.pos ORDER BY position LIMIT 1)
) AS c
ORDER BY c.position

-- name: keys_of
SELECT kid, public_jwk::text AS public_jwk FROM chain_checkpoint_keys
WHERE kid = ANY($1::text[]) ORDER BY first_used, kid
