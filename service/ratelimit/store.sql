-- name: take
-- One hit from each bucket in order, or from none (migrations/0013_rate_limits_exact.sql).
SELECT refused, current_hits, previous_hits
FROM rate_limit_take($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::integer[],
                     $6::timestamptz[], $7, $8)
