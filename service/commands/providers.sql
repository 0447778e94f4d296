-- name: remember_jti
INSERT INTO seen_jtis (tenant_id, issuer, jti, keep_until) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING

-- name: prune_jtis
DELETE FROM seen_jtis
WHERE ctid = ANY (ARRAY(SELECT ctid FROM seen_jtis WHERE keep_until < $1 LIMIT $2))
