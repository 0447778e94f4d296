-- Queries of `authledger rotate-secret` (service/crypto/rotation.py). Run in one transaction.

-- name: other_sessions
SELECT count(*) FROM pg_stat_activity
-- Another role's sessions show no backend_type to a role without pg_read_all_stats (the
-- owner, usually): a session with a user name is a client then; background workers have none.
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (backend_type = 'client backend' OR (backend_type IS NULL AND usename IS NOT NULL))

-- name: lock
LOCK TABLE retained_keys, subject_keys, signing_keys, mail_outbox IN EXCLUSIVE MODE

-- name: retained
SELECT purpose, wrapped FROM retained_keys ORDER BY purpose

-- name: retain
INSERT INTO retained_keys (purpose, wrapped, rotated_at) VALUES ($1, $2, now())
ON CONFLICT (purpose) DO UPDATE SET wrapped = excluded.wrapped, rotated_at = excluded.rotated_at

-- name: subject_keys
SELECT subject_id, wrapped_key FROM subject_keys
WHERE subject_id > $1 AND length(wrapped_key) > 0
ORDER BY subject_id LIMIT $2

-- name: rewrap_subject_keys
UPDATE subject_keys AS k SET wrapped_key = u.wrapped
FROM unnest($1::text[], $2::bytea[]) AS u (subject_id, wrapped)
WHERE k.subject_id = u.subject_id

-- name: signing_keys
SELECT kid, private_key FROM signing_keys ORDER BY kid

-- name: rewrap_signing_key
UPDATE signing_keys SET private_key = $2 WHERE kid = $1

-- name: queued_mail
SELECT attempt_id, link_token_sealed FROM mail_outbox
WHERE length(link_token_sealed) > 0 ORDER BY attempt_id

-- name: reseal_mail
UPDATE mail_outbox SET link_token_sealed = $2 WHERE attempt_id = $1
