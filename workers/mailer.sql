-- name: expire
-- Pending rows whose link window is over and that no mailer is sending: never sent.
UPDATE mail_outbox
SET status = 'expired', link_token_sealed = ''::bytea, lease_until = NULL
WHERE status = 'pending' AND link_expires_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
RETURNING attempt_id

-- name: claim
-- Due rows, each taken by one mailer: SKIP LOCKED keeps two claims apart while they run, the
-- lease keeps the others off the row while it is being sent. `tries` counts the sends begun
-- and fences the later updates: a mailer whose lease ran out cannot write over a newer try.
UPDATE mail_outbox AS m
SET lease_until = $2, tries = m.tries + 1
WHERE m.attempt_id IN (
    SELECT attempt_id FROM mail_outbox
    WHERE status = 'pending' AND next_try_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
    ORDER BY next_try_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING m.attempt_id, m.tenant_id, m.registration_id, m.recipient_sealed,
          m.link_token_sealed, m.link_expires_at, m.tries, m.kind

-- name: mark_sent
-- A lane's sends, once its share of the round is done. Not fenced by `tries`: the mail went
-- out, whichever try sent it. "Not done" rather than status = 'pending' (the same rows, by
-- the status check): that condition lets the planner take the pending-expiry index for it,
-- which holds an entry for every row sent since the last vacuum, and read it whole beside
-- the key lookups (1.7 ms and 530 blocks a statement after a burst of 20,000 mails).
UPDATE mail_outbox
SET status = 'sent', sent_at = $2, link_token_sealed = ''::bytea, lease_until = NULL,
    last_error = NULL
WHERE attempt_id = ANY ($1::text[]) AND status NOT IN ('sent', 'failed', 'expired')

-- name: mark_expired
UPDATE mail_outbox
SET status = 'expired', link_token_sealed = ''::bytea, lease_until = NULL
WHERE attempt_id = $1 AND status = 'pending' AND tries = $2

-- name: mark_retry
UPDATE mail_outbox
SET next_try_at = $3, lease_until = NULL, last_error = $4
WHERE attempt_id = $1 AND status = 'pending' AND tries = $2

-- name: mark_failed
UPDATE mail_outbox
SET status = 'failed', link_token_sealed = ''::bytea, lease_until = NULL, last_error = $3
WHERE attempt_id = $1 AND status = 'pending' AND tries = $2

-- name: next_due
-- When the next pending row becomes claimable (its retry time, or its lease's end).
SELECT min(greatest(next_try_at, coalesce(lease_until, next_try_at)))
FROM mail_outbox WHERE status = 'pending'
