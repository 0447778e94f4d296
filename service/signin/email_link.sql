-- name: insert
-- A new sign-in link (the caller runs it in the transaction that stores the link's subject key
-- and queues its mail).
INSERT INTO sign_in_links (
    link_id, tenant_id, token_hash, email_sealed, email_index, return_to, created_at, expires_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)

-- name: prune
-- Up to 100 links whose time is over, used or not (any tenant's: `seen_jtis` does the same):
-- deleted with their outbox rows, and their subject keys emptied, so the address they sealed
-- is gone for good. SKIP LOCKED: two replicas pruning at once take different rows.
WITH gone AS (
    DELETE FROM sign_in_links
    WHERE link_id IN (
        SELECT link_id FROM sign_in_links WHERE expires_at <= $1
        ORDER BY expires_at LIMIT 100 FOR UPDATE SKIP LOCKED
    )
    RETURNING link_id
), mail AS (
    DELETE FROM mail_outbox WHERE attempt_id IN (SELECT link_id FROM gone) AND kind = 'sign_in'
), keys AS (
    UPDATE subject_keys SET wrapped_key = ''::bytea, erased_at = coalesce(erased_at, $1)
    WHERE subject_id IN (SELECT link_id FROM gone)
)
SELECT count(*) FROM gone

-- name: peek
-- GET /login/email: what the link is, without touching it (link scanners consume nothing).
SELECT link_id, email_sealed, return_to, expires_at, used_at
FROM sign_in_links WHERE tenant_id = $1 AND token_hash = $2

-- name: use
-- POST /login/email: the link, used once. One statement: of two racing posts, one gets the row.
UPDATE sign_in_links SET used_at = $3
WHERE tenant_id = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > $3
RETURNING link_id, email_sealed, return_to, expires_at

-- name: forget
-- Erasure: the person's links and their queued mail; answers the link ids, whose subject keys
-- the caller destroys.
WITH gone AS (
    DELETE FROM sign_in_links WHERE tenant_id = $1 AND email_index = ANY($2::text[])
    RETURNING link_id
), mail AS (
    DELETE FROM mail_outbox
    WHERE tenant_id = $1 AND kind = 'sign_in' AND attempt_id IN (SELECT link_id FROM gone)
)
SELECT link_id FROM gone ORDER BY link_id

-- name: of_addresses
-- Erasure, before it decides whether anyone is to be erased.
SELECT link_id FROM sign_in_links WHERE tenant_id = $1 AND email_index = ANY($2::text[])
ORDER BY link_id
