-- name: presented_refresh
-- A refresh token presented at V1 (`type: refresh`), by its SHA-256: what decide_refresh needs,
-- how it ended included (`rotated` marks a copy coming back).
SELECT credential_id, tenant_id, kind, registration_id, status, end_reason, expires_at, version
FROM credentials WHERE token_hash = $1

-- name: live_family
-- A registration's live refresh tokens (one claim, one chain of rotations: its family).
SELECT credential_id, version FROM credentials
WHERE tenant_id = $1 AND registration_id = $2 AND kind = 'refresh_token' AND status = 'active'
ORDER BY issued_at, credential_id

-- name: active_pre_claim
-- What a claim ends (O-F): the registration's active credentials other than refresh tokens
-- (the pre-claim access tokens of an anonymous registration); person_claim's `none_left`
-- checks under the append lock that no other was minted since.
SELECT credential_id, version FROM credentials
WHERE tenant_id = $1 AND registration_id = $2 AND status = 'active' AND kind <> 'refresh_token'
ORDER BY issued_at, credential_id
