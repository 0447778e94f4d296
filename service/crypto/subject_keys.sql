-- Data subjects' keys (service/crypto/pii.py, the Sealer): wrapped under the key-encryption
-- key, emptied on erasure. `settled`: the row committed before this statement's snapshot, so
-- safe to cache (a key made in a transaction still open may yet roll back).

-- name: select_key
SELECT wrapped_key, created_at < now() AS settled FROM subject_keys WHERE subject_id = $1

-- name: select_keys
SELECT subject_id, wrapped_key, created_at < now() AS settled FROM subject_keys
WHERE subject_id = ANY ($1::text[])

-- name: create_or_select_key
-- One round trip for a seal: our new key, or (same snapshot, so never both) the stored one.
WITH created AS (
    INSERT INTO subject_keys (subject_id, wrapped_key) VALUES ($1, $2)
    ON CONFLICT (subject_id) DO NOTHING
    RETURNING wrapped_key
)
SELECT wrapped_key, false AS settled FROM created
UNION ALL
SELECT wrapped_key, created_at < now() AS settled FROM subject_keys WHERE subject_id = $1

-- name: insert_key
-- A new subject's key, one of an append's writes (FreshSubject.write).
INSERT INTO subject_keys (subject_id, wrapped_key) VALUES ($1, $2)

-- name: insert_keys
-- `insert_key` for many rows in one execution (events.rows.ColumnForm).
INSERT INTO subject_keys (subject_id, wrapped_key)
SELECT * FROM unnest($1::text[], $2::bytea[])

-- name: erase_key
INSERT INTO subject_keys (subject_id, wrapped_key, erased_at)
VALUES ($1, ''::bytea, coalesce($2, now()))
ON CONFLICT (subject_id) DO UPDATE
SET wrapped_key = ''::bytea, erased_at = coalesce(subject_keys.erased_at, excluded.erased_at)
