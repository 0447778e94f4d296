-- The bounded prunes that requests run read their expiry index, whatever the statistics.
--
-- Each allowed request prunes up to `prune` expired windows. Without an ORDER BY, the plan
-- of that prune on a table not yet analyzed (a new deployment, or one that grew fast since
-- its last analyze: many clients at once) could be a scan of the whole table to find nothing
-- expired, once per request, so a crowd of addresses made every request slower. Ordered by
-- expires_at, the plan is rate_limit_windows_expiry_idx, which stops at the first window
-- still live (tests/integration/test_prune_plans.py). The replay guard's and the claim
-- polls' prunes got the same ORDER BY in their queries. Everything else is as in 0013.
CREATE OR REPLACE FUNCTION rate_limit_take(
    buckets    text[],
    windows    bigint[],
    remaining  bigint[],  -- microseconds left in the current window
    periods    bigint[],  -- the window's length in microseconds
    limits     integer[],
    expires    timestamptz[],
    now_at     timestamptz,
    prune      integer
) RETURNS TABLE (refused integer, current_hits integer, previous_hits integer) ROWS 1
LANGUAGE plpgsql AS $$
DECLARE
    previous integer;
    taken    integer;
    weighed  numeric;  -- previous * remaining, against limit * period
    budget   numeric;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(buckets), 0) LOOP
        SELECT w.hits INTO previous FROM rate_limit_windows w
        WHERE w.bucket = buckets[i] AND w.window_no = windows[i] - 1;
        previous := coalesce(previous, 0);
        weighed := previous::numeric * remaining[i];
        budget := limits[i]::numeric * periods[i];
        taken := NULL;
        INSERT INTO rate_limit_windows AS w (bucket, window_no, hits, expires_at)
        SELECT buckets[i], windows[i], 1, expires[i]
        WHERE periods[i] + weighed <= budget
        ON CONFLICT (bucket, window_no) DO UPDATE SET hits = w.hits + 1
            WHERE (w.hits + 1)::numeric * periods[i] + weighed <= budget
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
        ORDER BY w.expires_at LIMIT prune FOR UPDATE SKIP LOCKED
    ));
    RETURN QUERY SELECT 0, 0, 0;
END
$$;
