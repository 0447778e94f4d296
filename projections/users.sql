-- name: created
INSERT INTO users (
    user_id, tenant_id, email_index, email_sealed, email_verified, created_at, phone_index,
    phone_sealed, phone_verified, name_sealed, created_via
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)

-- name: by_email
SELECT user_id FROM users WHERE tenant_id = $1 AND email_index = $2 AND email_verified

-- name: by_phone
SELECT user_id FROM users WHERE tenant_id = $1 AND phone_index = $2 AND phone_verified

-- name: email_taken
SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND email_index = $2)

-- name: phone_taken
SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND phone_index = $2)

-- name: erased
-- The sealed values could no longer be opened anyway; the blind indexes go too, so the
-- address no longer finds anyone (a later claim by it makes a new user).
UPDATE users
SET email_index = NULL, email_sealed = NULL, phone_index = NULL, phone_sealed = NULL,
    name_sealed = NULL, erased_at = $2
WHERE user_id = $1

-- name: by_email_any
SELECT user_id, email_index FROM users WHERE tenant_id = $1 AND email_index = $2

-- name: one
SELECT user_id, email_index FROM users WHERE tenant_id = $1 AND user_id = $2
