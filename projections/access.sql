-- name: granted
INSERT INTO access_credentials (
    credential_id, tenant_id, scope, client_id, label, token_hash, granted_at, version
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)

-- name: revoked
UPDATE access_credentials SET revoked_at = $2, revoke_reason = $3, version = $4
WHERE credential_id = $1

-- name: by_token_hash
SELECT credential_id, tenant_id, scope, client_id FROM access_credentials
WHERE token_hash = $1 AND revoked_at IS NULL

-- name: by_id
SELECT credential_id, tenant_id FROM access_credentials WHERE credential_id = $1

-- name: listed
SELECT credential_id, tenant_id, scope, client_id, label, granted_at, revoked_at, revoke_reason
FROM access_credentials
WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2 OR revoked_at IS NULL)
ORDER BY granted_at, credential_id

-- name: tenant_exists
SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1)
