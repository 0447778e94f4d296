-- name: issued
INSERT INTO credentials (
    credential_id, tenant_id, kind, token_hash, scopes, issued_via, registration_id, user_id,
    status, expires_at, issued_at, version, issuer, delegation_id
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, $11, $12, $13)

-- name: issued_rows
-- `issued` for many rows in one execution (events.rows.ColumnForm): an array per argument,
-- each row's scopes one space-joined text.
INSERT INTO credentials (
    credential_id, tenant_id, kind, token_hash, scopes, issued_via, registration_id, user_id,
    status, expires_at, issued_at, version, issuer, delegation_id
)
SELECT cred, tenant, kind, token_hash, string_to_array(scopes, ' '), via, reg, user_id,
       'active', expires, issued, version, issuer, delegation
FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::timestamptz[], $10::timestamptz[], $11::integer[], $12::text[], $13::text[]
) AS c (cred, tenant, kind, token_hash, scopes, via, reg, user_id, expires, issued, version,
        issuer, delegation)

-- name: rescoped
UPDATE credentials
SET scopes = $2, user_id = coalesce($3, user_id), expires_at = $4, version = $5
WHERE credential_id = $1

-- name: ended
UPDATE credentials
SET status = $2, ended_at = $3, end_reason = $4, version = $5
WHERE credential_id = $1 AND status = 'active'

-- name: by_token
SELECT credential_id, tenant_id, kind, scopes, registration_id, user_id, status, expires_at
FROM credentials WHERE token_hash = $1

-- name: active_of_delegation
-- $3: a logout ends only what was issued before it was signed (security finding 8)
SELECT credential_id, version FROM credentials
WHERE tenant_id = $1 AND delegation_id = $2 AND status = 'active' AND issued_at < $3
ORDER BY issued_at, credential_id

-- name: active_of_registration
SELECT credential_id, version FROM credentials
WHERE tenant_id = $1 AND registration_id = $2 AND status = 'active'
ORDER BY issued_at, credential_id LIMIT $3

-- name: active_of_user
SELECT credential_id, version FROM credentials
WHERE tenant_id = $1 AND user_id = $2 AND status = 'active'
ORDER BY issued_at, credential_id LIMIT $3

-- name: active_of_issuer
SELECT credential_id, version FROM credentials
WHERE tenant_id = $1 AND issuer = $2 AND status = 'active'
ORDER BY issued_at, credential_id LIMIT $3

-- name: active_one
SELECT credential_id, version FROM credentials
WHERE tenant_id = $1 AND credential_id = $2 AND status = 'active' LIMIT $3
