-- A claimed registration keeps the hash of the link that claimed it (the hash only, as while
-- the link was live), so E6 and E7 on a used link answer "already claimed" (409) instead of
-- "this link is not valid" (404); until now the claim cleared it (projections/registrations.sql
-- `claimed`). Registrations claimed before this migration get it back from their completed
-- attempt's `claim.attempt_started`, exactly as a replay folds it, so `replay --verify` stays
-- clean; erased ones stay without (erasure clears it).
UPDATE registrations r
SET attempt_token_hash = e.payload ->> 'attempt_token_hash'
FROM events e
WHERE r.status = 'claimed'
  AND r.attempt_token_hash IS NULL
  AND r.erased_at IS NULL
  AND e.tenant_id = r.tenant_id
  AND e.stream_id = r.registration_id
  AND e.type = 'claim.attempt_started'
  AND e.payload ->> 'attempt_id' = r.attempt_id;
