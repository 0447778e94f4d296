-- name: next_deadline
-- The oldest deadline not yet recorded (past or future), NULL when none: one index probe per
-- source. The same predicates as the expiry worker's `due` (workers/expiry.sql), so a deadline
-- found here is found there once passed.
SELECT least(
    (SELECT min(expires_at) FROM registrations
     WHERE status IN ('unclaimed', 'pending_claim')),
    (SELECT min(link_expires_at) FROM registrations
     WHERE attempt_status IN ('initiated', 'challenged')),
    (SELECT min(expires_at) FROM credentials WHERE status = 'active')
)
