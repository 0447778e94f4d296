-- name: constraints
SELECT conname, contype::text AS contype, pg_get_constraintdef(c.oid) AS definition
FROM pg_constraint c
WHERE conrelid = to_regclass('public.' || $1) AND contype IN ('p', 'u', 'x')
ORDER BY conname

-- name: plain_indexes
SELECT i.indexname, i.indexdef
FROM pg_indexes i
WHERE i.schemaname = 'public' AND i.tablename = $1
  AND NOT EXISTS (
      SELECT 1 FROM pg_constraint c
      WHERE c.conrelid = to_regclass('public.' || $1) AND c.conname = i.indexname
  )
ORDER BY i.indexname

-- name: primary_key
SELECT a.attname
FROM pg_index x
JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)
WHERE x.indrelid = to_regclass('public.' || $1) AND x.indisprimary
ORDER BY array_position(x.indkey, a.attnum)

-- name: head
SELECT coalesce(max(position), 0) FROM events

-- name: shadow_relations
-- The constraints and indexes a shadow table already has (a resumed build made some).
SELECT conname AS name FROM pg_constraint
WHERE conrelid = to_regclass(format('%I.%I', $1::text, $2::text))
UNION
SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2
