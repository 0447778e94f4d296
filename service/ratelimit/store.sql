-- name: take
-- One hit from each bucket in order, or from none (migrations/0011_rate_limits.sql).
SELECT refused, current_hits, previous_hits
FROM rate_limit_take($1::text[], $2::bigint[], $3::float8[], $4::integer[], $5::timestamptz[],
                     $6, $7)
