-- name: created
INSERT INTO delegations (
    delegation_id, tenant_id, issuer, audience, user_id, matched_by, uses, created_at,
    last_used_at, version
) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $8)

-- name: used
UPDATE delegations SET uses = uses + 1, last_used_at = $2, version = $3
WHERE delegation_id = $1

-- name: used_rows
-- `used` for many delegations in one execution (events.rows.ColumnForm); a projection layer
-- touches each row once (projections.layers), as an UPDATE … FROM needs.
UPDATE delegations AS d SET uses = d.uses + 1, last_used_at = u.at, version = u.version
FROM unnest($1::text[], $2::timestamptz[], $3::integer[]) AS u (delegation, at, version)
WHERE d.delegation_id = u.delegation

-- name: revoked
-- `generation`: how often it was revoked, the generation its subject's assertions must carry.
UPDATE delegations SET revoked_at = $2, generation = generation + 1, version = $3
WHERE delegation_id = $1

-- name: head
-- A delegation's user, version and generation, for a command that appends to its stream:
-- the row is at the stream's version (this projection writes every event of the stream, in
-- the append's transaction), so one indexed read stands in for folding a stream that grows
-- by an event with every use (service/commands/delegation_head.py).
SELECT user_id, version, generation FROM delegations WHERE delegation_id = $1 AND tenant_id = $2
