-- name: stream_version
-- A stream's version as the log has it now: V6 reads it again under the append lock (its
-- `also` step), so a claim or a revocation recorded since its decision sends it round again.
SELECT coalesce(max(stream_version), 0) FROM events WHERE tenant_id = $1 AND stream_id = $2

-- name: subject_for_exchange
-- An ID-JAG subject as V6 decides on it: its delegation and whether its user was erased.
SELECT d.delegation_id, d.version, d.generation, d.user_id, d.issuer,
       u.erased_at IS NOT NULL AS user_erased
FROM delegations d LEFT JOIN users u ON u.user_id = d.user_id
WHERE d.tenant_id = $1 AND d.delegation_id = $2

-- name: presented
-- V8: the credential a presented token is, by its SHA-256, with the version to end it at.
SELECT credential_id, tenant_id, status, expires_at, version, registration_id, user_id
FROM credentials WHERE token_hash = $1
