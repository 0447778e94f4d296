-- name: created
-- `delegation_id`: a step-up's subject (v0.6), so a revocation of the subject finds it.
INSERT INTO registrations (
    registration_id, tenant_id, kind, status, requested_credential_type, claim_token_hash,
    expires_at, credential_id, version, created_at, updated_at, dialect, delegation_id
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12)

-- name: created_rows
-- `created` for many rows in one execution (events.rows.ColumnForm): an array per argument.
INSERT INTO registrations (
    registration_id, tenant_id, kind, status, requested_credential_type, claim_token_hash,
    expires_at, credential_id, version, created_at, updated_at, dialect, delegation_id
)
SELECT reg, tenant, kind, status, wanted, claim_hash, expires, cred, version, created, created,
       dialect, delegation
FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
    $8::text[], $9::integer[], $10::timestamptz[], $11::text[], $12::text[]
) AS r (reg, tenant, kind, status, wanted, claim_hash, expires, cred, version, created, dialect,
        delegation)

-- name: attempt_started
UPDATE registrations
SET status = 'pending_claim', attempt_id = $2, attempt_status = 'initiated',
    attempt_token_hash = $3, link_expires_at = $4, email_index = $5,
    version = $6, updated_at = $7
WHERE registration_id = $1

-- name: attempt_started_rows
-- `attempt_started` for many registrations in one execution (events.rows.ColumnForm); a
-- projection layer touches each row once (projections.layers), as an UPDATE … FROM needs.
UPDATE registrations AS r
SET status = 'pending_claim', attempt_id = u.attempt, attempt_status = 'initiated',
    attempt_token_hash = u.token_hash, link_expires_at = u.link_expires,
    email_index = u.email_index, version = u.version, updated_at = u.at
FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::integer[],
    $7::timestamptz[]
) AS u (reg, attempt, token_hash, link_expires, email_index, version, at)
WHERE r.registration_id = u.reg

-- name: attempt_status
-- superseded / challenged / locked / denied; a link that can no longer mint loses its lookup
-- (a denied attempt's link answers "not valid", 404).
UPDATE registrations
SET attempt_status = $2,
    attempt_token_hash = CASE WHEN $2 IN ('initiated', 'challenged')
                              THEN attempt_token_hash END,
    version = $3, updated_at = $4
WHERE registration_id = $1

-- name: attempt_link_expired
-- claim.attempt_expired: the link mints no more codes, but keeps its lookup, so E6/E7 still
-- answer "expired" (410) rather than "unknown" (404), and the last code still completes
-- (spec §6.2, §6.3). Supersession, lock, the registration's expiry or erasure clears it.
UPDATE registrations
SET attempt_status = 'link_expired', version = $2, updated_at = $3
WHERE registration_id = $1

-- name: touched
UPDATE registrations SET version = $2, updated_at = $3 WHERE registration_id = $1

-- name: claimed
-- The completed attempt keeps its link's hash (never the link), so reopening the used link
-- answers "already claimed" rather than "not valid" (migration 0015).
UPDATE registrations
SET status = 'claimed', user_id = $2, credential_id = $3, attempt_status = 'completed',
    version = $4, updated_at = $5
WHERE registration_id = $1

-- name: ended
-- registration.expired ('expired') and registration.revoked ('revoked'): a live attempt is
-- void and its link loses its lookup.
UPDATE registrations
SET status = $2,
    attempt_status = CASE WHEN attempt_status IN ('initiated', 'challenged', 'link_expired')
                          THEN 'void'
                          ELSE attempt_status END,
    attempt_token_hash = NULL, version = $3, updated_at = $4
WHERE registration_id = $1

-- name: erased
UPDATE registrations
SET email_index = NULL, attempt_token_hash = NULL, erased_at = $3,
    attempt_status = CASE WHEN attempt_status IN ('initiated', 'challenged', 'link_expired')
                          THEN 'void'
                          ELSE attempt_status END,
    version = $2, updated_at = $3
WHERE registration_id = $1

-- name: attempts_erased
-- Older attempts' data lives in claim_attempt_addresses, not here; only a current attempt
-- named by the erasure loses its lookups (and is void if it was live).
UPDATE registrations
SET attempt_status = CASE WHEN attempt_id = ANY($2::text[])
                               AND attempt_status IN ('initiated', 'challenged', 'link_expired')
                          THEN 'void'
                          ELSE attempt_status END,
    attempt_token_hash = CASE WHEN attempt_id = ANY($2::text[]) THEN NULL
                              ELSE attempt_token_hash END,
    email_index = CASE WHEN attempt_id = ANY($2::text[]) THEN NULL ELSE email_index END,
    version = $3, updated_at = $4
WHERE registration_id = $1

-- name: by_claim_token
SELECT registration_id, tenant_id FROM registrations WHERE claim_token_hash = $1

-- name: by_attempt_token
SELECT registration_id, tenant_id FROM registrations WHERE attempt_token_hash = $1

-- name: of_person
-- Registrations that hold a person's data: claimed by one of their users, or whose claim
-- attempt named their address.
SELECT registration_id FROM registrations
WHERE tenant_id = $1 AND (user_id = ANY($2::text[]) OR email_index = ANY($3::text[]))
  AND erased_at IS NULL
ORDER BY registration_id
