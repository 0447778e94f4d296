-- name: created
INSERT INTO subscriptions (
    subscription_id, tenant_id, url, audience, secret_sealed, event_types, reasons, status,
    cursor_position, attempts, delivered, failed_attempts, created_at, updated_at, version
) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, 0, 0, 0, $9, $9, $10)

-- name: updated
UPDATE subscriptions
SET url = $2, audience = $3, secret_sealed = $4, event_types = $5, reasons = $6,
    updated_at = $7, version = $8
WHERE subscription_id = $1

-- name: removed
-- The row stays (its history is worth showing); the sealed secret leaves the read model.
UPDATE subscriptions
SET status = 'removed', secret_sealed = NULL, next_attempt_at = NULL, updated_at = $2,
    version = $3
WHERE subscription_id = $1

-- name: delivered
UPDATE subscriptions
SET cursor_position = $2, attempts = 0, head_position = NULL, head_since = NULL,
    next_attempt_at = NULL, delivered = delivered + 1, last_delivered_at = $4,
    last_attempt_at = $4, last_status = $3, updated_at = $4, version = $5
WHERE subscription_id = $1

-- name: delivery_failed
-- A first try of a new head starts its clock (head_since); later tries keep it.
UPDATE subscriptions
SET attempts = $3,
    head_since = CASE WHEN head_position IS DISTINCT FROM $2 OR head_since IS NULL
                      THEN $7 ELSE head_since END,
    head_position = $2, next_attempt_at = $6, failed_attempts = failed_attempts + 1,
    last_attempt_at = $7, last_status = $4, last_error = $5, updated_at = $7, version = $8
WHERE subscription_id = $1

-- name: dead_lettered
UPDATE subscriptions
SET status = 'dead_letter', head_position = $2, attempts = $3, dead_letter_cause = $4,
    last_error = $5, next_attempt_at = NULL, dead_lettered_at = $6, updated_at = $6,
    version = $7
WHERE subscription_id = $1

-- name: replay_requested
UPDATE subscriptions
SET status = 'active', cursor_position = $2, attempts = 0, head_position = NULL,
    head_since = NULL, next_attempt_at = NULL, dead_lettered_at = NULL,
    dead_letter_cause = NULL, updated_at = $3, version = $4
WHERE subscription_id = $1

-- name: one
-- `next_position`: the first event waiting for it (none: it is up to date).
SELECT s.*, push_next_position(s.tenant_id, s.cursor_position, s.event_types, s.reasons)
           AS next_position
FROM subscriptions s WHERE s.tenant_id = $1 AND s.subscription_id = $2

-- name: listed
SELECT s.*, push_next_position(s.tenant_id, s.cursor_position, s.event_types, s.reasons)
           AS next_position
FROM subscriptions s WHERE s.tenant_id = $1 AND s.status <> 'removed'
ORDER BY s.created_at, s.subscription_id
