-- name: enqueue
-- One of the append's writes (a batch of two or more goes as `enqueue_rows`); the NOTIFY is
-- delivered when it commits, and its payload is the same for every row, so Postgres delivers
-- one a transaction (the mailer reads no payload). A retried command (same attempt id) writes
-- nothing twice.
WITH added AS (
    INSERT INTO mail_outbox (
        attempt_id, tenant_id, registration_id, recipient_sealed, link_token_sealed,
        link_expires_at, created_at, status, tries, next_try_at
    )
    VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $7)
    ON CONFLICT (attempt_id) DO NOTHING
    RETURNING attempt_id
)
SELECT pg_notify('authledger_mail', '') FROM added

-- name: enqueue_rows
-- `enqueue` for many rows in one execution (events.rows.ColumnForm): an array per argument,
-- one NOTIFY when any row was added. A row whose attempt id is stored, or repeated in the
-- arrays, is written once.
WITH added AS (
    INSERT INTO mail_outbox (
        attempt_id, tenant_id, registration_id, recipient_sealed, link_token_sealed,
        link_expires_at, created_at, status, tries, next_try_at
    )
    SELECT attempt, tenant, reg, recipient, token, link_expires, created, 'pending', 0, created
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::timestamptz[],
        $7::timestamptz[]
    ) AS u (attempt, tenant, reg, recipient, token, link_expires, created)
    ON CONFLICT (attempt_id) DO NOTHING
    RETURNING attempt_id
)
SELECT pg_notify('authledger_mail', '') WHERE EXISTS (SELECT FROM added)

-- name: enqueue_sign_in
-- A sign-in link's mail (v0.6 pages), in the transaction that stores the link: no
-- registration; the attempt id is the link's `sgn_…` id.
WITH added AS (
    INSERT INTO mail_outbox (
        attempt_id, tenant_id, registration_id, recipient_sealed, link_token_sealed,
        link_expires_at, created_at, status, tries, next_try_at, kind
    )
    VALUES ($1, $2, NULL, $3, $4, $5, $6, 'pending', 0, $6, 'sign_in')
    ON CONFLICT (attempt_id) DO NOTHING
    RETURNING attempt_id
)
SELECT pg_notify('authledger_mail', attempt_id) FROM added
