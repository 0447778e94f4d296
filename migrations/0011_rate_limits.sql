-- Rate-limit counters shared by every replica (service/ratelimit/, spec §10).
--
-- One row per bucket and fixed window. A bucket names the limit, its period, the tenant and
-- who is limited, the last as an HMAC under a key derived from the server secret:
-- `<limit>:<period seconds>:<tenant>:<hmac>` — no IP, email or token is ever stored here.
-- `window_no` is floor(epoch seconds / period) of the service's clock. The sliding estimate
-- of a bucket is this window's hits plus the previous window's weighted by the part of it
-- still inside the sliding period; a row is read for two windows, so it expires at the end
-- of the window after its own and is pruned from then on.
--
-- UNLOGGED: counters are not worth a WAL write and an fsync per request. A Postgres crash or
-- a failover empties the table, so every limit starts again from zero — the same outcome as
-- failing open for a moment, which spec §10 accepts for store errors.
CREATE UNLOGGED TABLE rate_limit_windows (
    bucket      text        NOT NULL,
    window_no   bigint      NOT NULL,
    hits        integer     NOT NULL CHECK (hits >= 0),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (bucket, window_no)
);
CREATE INDEX rate_limit_windows_expiry_idx ON rate_limit_windows (expires_at);

-- Take one hit from each bucket, in the order given (per IP before per tenant), or from none.
--
-- Bucket i admits when (its hits + 1) + previous window's hits * weights[i] <= limits[i];
-- the hit is counted only then (a refused request consumes nothing, so Retry-After stays
-- true however often a client retries too early). The first bucket that refuses stops the
-- walk: the later ones are not touched, and the hits already taken from the earlier ones are
-- given back (their rows are still locked by this statement, so the undo is exact). Returns
-- 0 when every bucket admitted, else the refusing bucket's 1-based index with its current
-- and previous windows' hits, from which the caller computes Retry-After.
--
-- Row locks are taken in the caller's order, which is the same for every request of a kind,
-- so two requests never wait on each other in a cycle. An admitted call also removes up to
-- `prune` expired rows, skipping rows another statement holds: no worker is needed.
CREATE FUNCTION rate_limit_take(
    buckets  text[],
    windows  bigint[],
    weights  double precision[],  -- 1 - elapsed fraction of the current window
    limits   integer[],
    expires  timestamptz[],
    now_at   timestamptz,
    prune    integer
) RETURNS TABLE (refused integer, current_hits integer, previous_hits integer) ROWS 1
LANGUAGE plpgsql AS $$
DECLARE
    previous integer;
    taken    integer;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(buckets), 0) LOOP
        SELECT w.hits INTO previous FROM rate_limit_windows w
        WHERE w.bucket = buckets[i] AND w.window_no = windows[i] - 1;
        previous := coalesce(previous, 0);
        taken := NULL;
        INSERT INTO rate_limit_windows AS w (bucket, window_no, hits, expires_at)
        SELECT buckets[i], windows[i], 1, expires[i]
        WHERE 1 + previous * weights[i] <= limits[i]
        ON CONFLICT (bucket, window_no) DO UPDATE SET hits = w.hits + 1
            WHERE w.hits + 1 + previous * weights[i] <= limits[i]
        RETURNING w.hits INTO taken;
        IF taken IS NULL THEN
            FOR earlier IN 1 .. i - 1 LOOP
                UPDATE rate_limit_windows w SET hits = w.hits - 1
                WHERE w.bucket = buckets[earlier] AND w.window_no = windows[earlier];
            END LOOP;
            SELECT w.hits INTO taken FROM rate_limit_windows w
            WHERE w.bucket = buckets[i] AND w.window_no = windows[i];
            RETURN QUERY SELECT i, coalesce(taken, 0), previous;
            RETURN;
        END IF;
    END LOOP;
    DELETE FROM rate_limit_windows
    WHERE ctid = ANY (ARRAY(
        SELECT w.ctid FROM rate_limit_windows w WHERE w.expires_at < now_at
        LIMIT prune FOR UPDATE SKIP LOCKED
    ));
    RETURN QUERY SELECT 0, 0, 0;
END
$$;
