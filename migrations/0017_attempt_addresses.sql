-- Every claim attempt's address stays findable after a newer attempt replaces it (security
-- issue 12, finding 4): `registrations.email_index` holds only the current attempt's, so an
-- erasure by address missed the earlier ones. A projection (projections/attempt_addresses.py):
-- one row per `claim.attempt_started`, deleted when an erasure destroys the key its address
-- was sealed under. `subject_id` is that key's subject: the attempt's own id for attempts
-- started from now on, the registration's id for the ones before.
CREATE TABLE attempt_addresses (
    attempt_id       text        NOT NULL,  -- first: unique alone (random `cla_` ids)
    registration_id  text        NOT NULL,
    tenant_id        text        NOT NULL,
    email_index      text        NOT NULL,  -- blind index (HMAC), never the address
    subject_id       text        NOT NULL,
    started_at       timestamptz NOT NULL,
    PRIMARY KEY (registration_id, attempt_id)
);
CREATE INDEX attempt_addresses_email_idx ON attempt_addresses (tenant_id, email_index);

-- The rows a replay of the log folds: each attempt ever started, unless a later erasure on its
-- registration's stream destroyed its key (what the projection's deletes do).
INSERT INTO attempt_addresses (
    attempt_id, registration_id, tenant_id, email_index, subject_id, started_at
)
SELECT s.payload ->> 'attempt_id', s.stream_id, s.tenant_id, s.payload ->> 'email_index',
       substring(s.payload ->> 'email_sealed' FROM '^pii1\.(.*)\.[^.]*$'), s.occurred_at
FROM events s
WHERE s.type = 'claim.attempt_started'
  AND s.stream_type = 'registration'
  AND NOT EXISTS (
      SELECT 1 FROM events e
      WHERE e.tenant_id = s.tenant_id
        AND e.stream_type = 'registration'
        AND e.stream_id = s.stream_id
        AND e.position > s.position
        AND (
            (e.type = 'claim.attempts_erased'
             AND (e.payload::jsonb -> 'attempt_ids') ? (s.payload ->> 'attempt_id'))
            OR (e.type = 'registration.erased'
                AND (substring(s.payload ->> 'email_sealed' FROM '^pii1\.(.*)\.[^.]*$')
                         = s.stream_id
                     OR coalesce(e.payload::jsonb -> 'attempts', '[]'::jsonb)
                         ? (s.payload ->> 'attempt_id')))
        )
  );
