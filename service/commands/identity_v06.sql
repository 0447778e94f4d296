-- V1 with an ID-JAG at the v0.6 door (service/commands/identity_v06.py).

-- name: open_step_ups
-- The subject's step-ups still running at $3, newest first: the newest is the one a new
-- step-up replaces (each replaces the previous, so at most one is open; should a history
-- written before that rule have left two, the older ones run out their time). Run again
-- under the append lock, after the new one's append (its `also` step), where a step-up not
-- seen when deciding is one recorded meanwhile, which the new one must replace too.
SELECT registration_id FROM registrations
WHERE tenant_id = $1 AND delegation_id = $2 AND status IN ('unclaimed', 'pending_claim')
  AND erased_at IS NULL AND expires_at > $3
ORDER BY created_at DESC, registration_id DESC

-- name: user_address
-- The verified address a matched user signs in with: a step-up's hint.
SELECT email_index, email_sealed FROM users
WHERE tenant_id = $1 AND user_id = $2 AND email_verified AND erased_at IS NULL
