-- name: remember_jtis
-- remember_jti for a batch's pairs in one statement (events.writer groups them): how many
-- were new. Fewer than sent means a replay among them (or one pair twice), and the batch is
-- committed again request by request, each with remember_jti.
WITH pruned AS (
    DELETE FROM seen_jtis
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM seen_jtis WHERE keep_until < $5 ORDER BY keep_until LIMIT $6
    ))
), added AS (
    INSERT INTO seen_jtis (tenant_id, issuer, jti, keep_until)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM added

-- name: remember_jti
-- The pair, and up to $6 entries past their keep_until pruned, in one statement (one round
-- trip under the append lock). A pruned entry belonged to a token past its `exp`, which no
-- check accepts any more, so whether it still counts as a conflict here changes nothing.
-- The prune's ORDER BY makes its plan the keep_until index, which stops at the first entry
-- still kept: without it, a table not yet analyzed (or a generic plan) was scanned whole
-- under the append lock, every batch, to find nothing (0.7 ms at 6,600 entries, growing).
WITH pruned AS (
    DELETE FROM seen_jtis
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM seen_jtis WHERE keep_until < $5 ORDER BY keep_until LIMIT $6
    ))
)
INSERT INTO seen_jtis (tenant_id, issuer, jti, keep_until) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
