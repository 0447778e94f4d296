-- Rate limits decided in exact integer arithmetic (service/ratelimit/window.py).
--
-- 0011 weighed the previous window by a double precision fraction, so at the boundary the
-- decision here and the Retry-After computed by the service could disagree by a rounding
-- error: a client told to retry after 40 s could still be refused at 40 s. The weight is now
-- given as two integers, the microseconds left in the current window and the period in
-- microseconds, and bucket i admits when
--
--     (hits + 1) * periods[i] + previous * remaining[i] <= limits[i] * periods[i]
--
-- in numeric (exact, and no overflow whatever the counts). Everything else is as in 0011.
DROP FUNCTION rate_limit_take(
    text[], bigint[], double precision[], integer[], timestamptz[], timestamptz, integer
);

CREATE FUNCTION rate_limit_take(
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
        LIMIT prune FOR UPDATE SKIP LOCKED
    ));
    RETURN QUERY SELECT 0, 0, 0;
END
$$;
