-- name: started
INSERT INTO attempt_addresses (
    registration_id, attempt_id, tenant_id, email_index, subject_id, started_at
) VALUES ($1, $2, $3, $4, $5, $6)

-- name: started_rows
-- `started` for many rows in one execution (events.rows.ColumnForm): an array per argument.
INSERT INTO attempt_addresses (
    registration_id, attempt_id, tenant_id, email_index, subject_id, started_at
)
SELECT * FROM unnest(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]
)

-- name: attempts_erased
DELETE FROM attempt_addresses WHERE registration_id = $1 AND attempt_id = ANY($2::text[])

-- name: registration_erased
-- The registration's key went, and with it every address sealed under it (attempts before
-- migration 0017); of the attempts with keys of their own, those the erasure names.
DELETE FROM attempt_addresses
WHERE registration_id = $1 AND (subject_id = registration_id OR attempt_id = ANY($2::text[]))

-- name: naming
-- The attempts that named one of these addresses, in registrations of this tenant.
SELECT registration_id, attempt_id, subject_id FROM attempt_addresses
WHERE tenant_id = $1 AND email_index = ANY($2::text[])
ORDER BY registration_id, attempt_id
