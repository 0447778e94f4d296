-- name: claim
-- Subscriptions with an event waiting whose next try is due, each leased to one worker. The
-- upsert takes a lease only where there is none or it ran out: of two workers claiming at
-- once, the second waits for the first's row, then finds the lease live and skips it.
WITH due AS (
    SELECT s.subscription_id
    FROM subscriptions s
    LEFT JOIN push_leases l ON l.subscription_id = s.subscription_id
    WHERE s.tenant_id = $1 AND s.status = 'active'
      AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= $2)
      AND (l.lease_until IS NULL OR l.lease_until <= $2)
      AND push_next_position(s.tenant_id, s.cursor_position, s.event_types, s.reasons)
          IS NOT NULL
    ORDER BY s.next_attempt_at NULLS FIRST, s.subscription_id
    LIMIT $5
)
INSERT INTO push_leases AS l (subscription_id, holder, lease_until)
SELECT subscription_id, $3, $4 FROM due
ON CONFLICT (subscription_id) DO UPDATE
SET holder = EXCLUDED.holder, lease_until = EXCLUDED.lease_until
WHERE l.lease_until <= $2
RETURNING l.subscription_id

-- name: renew
-- Before each try: the lease runs `lease` seconds from now, if this worker still holds it.
UPDATE push_leases SET lease_until = $3 WHERE subscription_id = $1 AND holder = $2
RETURNING subscription_id

-- name: release
DELETE FROM push_leases WHERE subscription_id = $1 AND holder = $2

-- name: release_held
-- A stopping worker gives back whatever it still holds: a stop can land after a claim
-- committed and before its release ran (or while the release was under way).
DELETE FROM push_leases WHERE holder = $1

-- name: event_at
-- The event to push, and the kind and token hash of the credential it ended (the SET's
-- credential_type, and the hash prefix a resource server matches bearer values with).
SELECT e.position, e.event_id, e.tenant_id, e.stream_type, e.stream_id, e.stream_version,
       e.type, e.schema_version, e.occurred_at, e.recorded_at, e.payload, e.metadata, e.hash,
       c.kind, c.token_hash
FROM events e
LEFT JOIN credentials c ON c.credential_id = e.stream_id
WHERE e.position = $1

-- name: next_due
-- When a subscription with an event waiting can next be claimed: its next try, or the end of
-- another worker's lease. $2 (now) when one is claimable already; NULL when none waits.
SELECT min(coalesce(greatest(s.next_attempt_at, l.lease_until), $2))
FROM subscriptions s
LEFT JOIN push_leases l ON l.subscription_id = s.subscription_id
WHERE s.tenant_id = $1 AND s.status = 'active'
  AND push_next_position(s.tenant_id, s.cursor_position, s.event_types, s.reasons) IS NOT NULL
