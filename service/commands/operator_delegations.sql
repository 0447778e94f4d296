-- O-R, the delegation part (service/commands/operator_delegations.py): the delegations an
-- operator's revocation ends, paged by id. Each gets its event even when revoked before:
-- the row cannot tell a use after that revocation from one in the same instant.

-- name: of_user
SELECT delegation_id FROM delegations
WHERE tenant_id = $1 AND user_id = $2 AND delegation_id > $3
ORDER BY delegation_id LIMIT $4

-- name: of_issuer
SELECT delegation_id FROM delegations
WHERE tenant_id = $1 AND issuer = $2 AND delegation_id > $3
ORDER BY delegation_id LIMIT $4

-- name: one
SELECT delegation_id FROM delegations
WHERE tenant_id = $1 AND delegation_id = $2 AND delegation_id > $3
ORDER BY delegation_id LIMIT $4
