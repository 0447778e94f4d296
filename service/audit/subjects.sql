-- name: exists
SELECT EXISTS (SELECT 1 FROM events WHERE tenant_id = $1 AND stream_id = $2)

-- name: issuer_of_stream
SELECT payload ->> 'issuer' FROM events
WHERE tenant_id = $1 AND stream_id = $2 AND stream_version = 1

-- name: credential
SELECT registration_id, issued_via FROM credentials WHERE tenant_id = $1 AND credential_id = $2

-- name: credentials_of_registration
SELECT credential_id FROM credentials WHERE tenant_id = $1 AND registration_id = $2

-- name: credentials_of_user
SELECT credential_id, registration_id, issued_via FROM credentials
WHERE tenant_id = $1 AND user_id = $2

-- name: delegations_of_user
SELECT delegation_id FROM delegations WHERE tenant_id = $1 AND user_id = $2

-- name: delegations_of_issuer
SELECT delegation_id FROM delegations WHERE tenant_id = $1 AND issuer = $2

-- name: credentials_of_delegations
-- From the log, not the read model: every credential ever issued through these delegations
-- (`delegation.used` names it), on the (tenant_id, stream_id, stream_version) index. A use
-- at the v0.6 door answered with an assertion and names none.
SELECT DISTINCT payload ->> 'credential_id' AS credential_id FROM events
WHERE tenant_id = $1 AND stream_id = ANY($2::text[]) AND type = 'delegation.used'
  AND payload ->> 'credential_id' IS NOT NULL

-- name: events
-- A subject's events within a bound: positions up to $3, occurred at or before $4.
SELECT position, event_id, tenant_id, stream_type, stream_id, stream_version, type,
       schema_version, occurred_at, recorded_at, payload, metadata, hash
FROM events
WHERE tenant_id = $1 AND stream_id = ANY($2::text[]) AND position <= $3 AND occurred_at <= $4
  AND position > $5
ORDER BY position
LIMIT $6

-- name: recorded_at
SELECT recorded_at FROM events WHERE position = $1
