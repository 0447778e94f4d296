-- name: v06_of_registration
-- O-R: the v0.6 registrations an operator's revocation ends, besides their credentials; not
-- yet ended (an unclaimed one past its TTL is left to the expiry worker), paged by id.
SELECT registration_id FROM registrations
WHERE tenant_id = $1 AND registration_id = $2 AND registration_id > $3 AND dialect = 'v06'
  AND status IN ('unclaimed', 'pending_claim', 'claimed') AND erased_at IS NULL
ORDER BY registration_id LIMIT $4

-- name: v06_of_user
SELECT registration_id FROM registrations
WHERE tenant_id = $1 AND user_id = $2 AND registration_id > $3 AND dialect = 'v06'
  AND status IN ('unclaimed', 'pending_claim', 'claimed') AND erased_at IS NULL
ORDER BY registration_id LIMIT $4

-- name: v06_of_issuer
-- A provider's: the step-up registrations of its subjects (their delegations name it).
SELECT r.registration_id FROM registrations r
JOIN delegations d ON d.delegation_id = r.delegation_id AND d.tenant_id = r.tenant_id
WHERE r.tenant_id = $1 AND d.issuer = $2 AND r.registration_id > $3 AND r.dialect = 'v06'
  AND r.status IN ('unclaimed', 'pending_claim', 'claimed') AND r.erased_at IS NULL
ORDER BY r.registration_id LIMIT $4

-- name: step_ups_of_delegation
-- E9/V9: the subject's step-up registrations that have not ended (pending or claimed), also
-- when its delegation does not exist yet; they end with the subject's revocation.
SELECT registration_id FROM registrations
WHERE tenant_id = $1 AND delegation_id = $2 AND dialect = 'v06'
  AND status IN ('unclaimed', 'pending_claim', 'claimed') AND erased_at IS NULL
ORDER BY registration_id
