-- name: created
INSERT INTO users (user_id, tenant_id, email_index, email_sealed, email_verified, created_at)
VALUES ($1, $2, $3, $4, $5, $6)

-- name: by_email
SELECT user_id FROM users WHERE tenant_id = $1 AND email_index = $2 AND email_verified
