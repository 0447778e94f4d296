-- name: created
INSERT INTO delegations (
    delegation_id, tenant_id, issuer, audience, user_id, matched_by, uses, created_at,
    last_used_at, version
) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $8)

-- name: used
UPDATE delegations SET uses = uses + 1, last_used_at = $2, version = $3
WHERE delegation_id = $1

-- name: revoked
-- `generation`: how often it was revoked, the generation its subject's assertions must carry.
UPDATE delegations SET revoked_at = $2, generation = generation + 1, version = $3
WHERE delegation_id = $1
