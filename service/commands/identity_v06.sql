-- V1 with an ID-JAG at the v0.6 door (service/commands/identity_v06.py).

-- name: open_step_up
-- The subject's step-up still running, if any (each new one revokes the previous, so at most
-- one is open; the newest is taken should a race have left two). The command folds it and
-- checks it has not ended by time.
SELECT registration_id FROM registrations
WHERE tenant_id = $1 AND delegation_id = $2 AND status IN ('unclaimed', 'pending_claim')
  AND erased_at IS NULL
ORDER BY created_at DESC, registration_id DESC
LIMIT 1

-- name: user_address
-- The verified address a matched user signs in with: a step-up's hint.
SELECT email_index, email_sealed FROM users
WHERE tenant_id = $1 AND user_id = $2 AND email_verified AND erased_at IS NULL
