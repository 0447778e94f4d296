-- name: pace
-- V7 pacing (O-G, design section 5.2): one statement per poll of a token that resolved to a
-- registration. An early poll (half a second of tolerance for network jitter) is `too_fast`
-- and adds 5 s to the interval (RFC 8628 3.5), up to 60 s.
INSERT INTO claim_polls AS p (claim_token_hash, tenant_id, last_poll_at, interval_s, too_fast)
VALUES ($1, $2, $3, $4, false)
ON CONFLICT (claim_token_hash) DO UPDATE SET
    too_fast     = $3 < p.last_poll_at + make_interval(secs => p.interval_s - 0.5),
    interval_s   = CASE WHEN $3 < p.last_poll_at + make_interval(secs => p.interval_s - 0.5)
                        THEN least(p.interval_s + 5, 60) ELSE p.interval_s END,
    last_poll_at = $3
RETURNING too_fast, interval_s

-- name: prune_polls
-- Rows not polled for a day, a bounded batch per poll (the seen_jtis pattern, ORDER BY and
-- all: the index, not a scan of the table, whatever its statistics): no worker.
DELETE FROM claim_polls
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM claim_polls WHERE last_poll_at < $1 ORDER BY last_poll_at LIMIT $2
))
