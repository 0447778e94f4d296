-- name: due
-- `projections/deadlines.sql` (next_deadline) finds the same deadlines with the same
-- predicates: keep the two in step.
-- What has passed its deadline at $1, oldest first, at most $2 per source, from the partial
-- indexes of migrations 0005 and 0007. With $4, each row is claimed for this round with a
-- transaction-level advisory lock (class $3) on its registration's id (a credential without
-- a registration: its own id), and skipped when another worker holds it: SKIP LOCKED for
-- advisory locks. Row locks cannot serve, as the inline projector updates these very rows
-- from the appending connection, which would then wait on them. CASE fixes the order: the
-- lock is only tried on a row that is due.
(SELECT 'registration' AS source, tenant_id, registration_id, credential_id,
        expires_at AS deadline
 FROM registrations
 WHERE status IN ('unclaimed', 'pending_claim') AND expires_at <= $1
   AND CASE WHEN $4 THEN pg_try_advisory_xact_lock($3, hashtext(registration_id)) ELSE true END
 ORDER BY expires_at
 LIMIT $2)
UNION ALL
(SELECT 'attempt', tenant_id, registration_id, credential_id, link_expires_at
 FROM registrations
 WHERE attempt_status IN ('initiated', 'challenged') AND link_expires_at <= $1
   AND CASE WHEN $4 THEN pg_try_advisory_xact_lock($3, hashtext(registration_id)) ELSE true END
 ORDER BY link_expires_at
 LIMIT $2)
UNION ALL
(SELECT 'credential', c.tenant_id, c.registration_id,
        -- a token a v0.6 registration holds (not claimed) is settled with it: one item
        CASE WHEN r.dialect = 'v06' AND r.status IN ('unclaimed', 'pending_claim', 'expired')
             THEN NULL ELSE c.credential_id END,
        c.expires_at
 FROM credentials c
 LEFT JOIN registrations r
   ON r.tenant_id = c.tenant_id AND r.registration_id = c.registration_id
 WHERE c.status = 'active' AND c.expires_at <= $1
   AND CASE WHEN $4
            THEN pg_try_advisory_xact_lock($3, hashtext(coalesce(c.registration_id,
                                                                 c.credential_id)))
            ELSE true END
 ORDER BY c.expires_at
 LIMIT $2)

-- name: read_streams
-- Every event of the streams named by ($1 tenant ids, $2 stream ids), stream by stream.
SELECT e.position, e.event_id, e.tenant_id, e.stream_type, e.stream_id, e.stream_version,
       e.type, e.schema_version, e.occurred_at, e.recorded_at, e.payload, e.metadata, e.hash
FROM unnest($1::text[], $2::text[]) AS s (tenant_id, stream_id)
JOIN events e ON e.tenant_id = s.tenant_id AND e.stream_id = s.stream_id
ORDER BY e.tenant_id, e.stream_id, e.stream_version

-- name: held_tokens
-- The active credentials of the registrations named by ($1 tenant ids, $2 registration ids):
-- a v0.6 registration's pre-claim access tokens, which end with it.
SELECT c.tenant_id, c.registration_id, c.credential_id
FROM unnest($1::text[], $2::text[]) AS s (tenant_id, registration_id)
JOIN credentials c ON c.tenant_id = s.tenant_id AND c.registration_id = s.registration_id
WHERE c.status = 'active'
