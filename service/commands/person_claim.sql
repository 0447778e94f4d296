-- name: active_left
-- V5's `also` step, under the append lock and after the claim's (or lock's) own revocations
-- were projected: an active credential of the registration still there was minted since
-- the command read them, and sends it round again (design section 10.2).
-- An AuthKit claim's own refresh token (issued in the same append) is not one of them.
SELECT credential_id FROM credentials
WHERE tenant_id = $1 AND registration_id = $2 AND status = 'active' AND kind <> 'refresh_token'
LIMIT 1
