-- name: principal_by_token
-- One round trip on a cache miss: the credential and, when it belongs to a registration, that
-- registration's status (for the claim state). ID-JAG credentials have no registration row.
SELECT c.credential_id, c.tenant_id, c.kind, c.scopes, c.registration_id, c.user_id, c.status,
       c.expires_at, c.issued_at, c.version, r.status AS registration_status
FROM credentials c
LEFT JOIN registrations r ON r.registration_id = c.registration_id
WHERE c.token_hash = $1 AND c.kind <> 'refresh_token'  -- never a bearer (AuthKit)
