-- name: next_deadline
-- The oldest deadline not yet recorded (past or future), NULL when none: one index probe per
-- source. The same predicates as the expiry worker's `due` (workers/expiry.sql), so a deadline
-- found here is found there once passed.
--
-- Each probe is ORDER BY its deadline, LIMIT 1, not min(): a worker's connection keeps a
-- prepared statement's plan (asyncpg prepares it again after max_cached_statement_lifetime,
-- 300 s), and on the tables of a new deployment (empty) min() over credentials was planned
-- as an aggregate over another partial index of the active ones (issuer's), which then read
-- every active credential at every look: 8-18 ms at 30,000 credentials under load in the
-- bench's first minutes. An ordered probe is planned on its own deadline index whatever the
-- table holds (tests/integration/test_deadline_plan.py).
SELECT least(
    (SELECT expires_at FROM registrations
     WHERE status IN ('unclaimed', 'pending_claim') AND expires_at IS NOT NULL
     ORDER BY expires_at LIMIT 1),
    (SELECT link_expires_at FROM registrations
     WHERE attempt_status IN ('initiated', 'challenged') AND link_expires_at IS NOT NULL
     ORDER BY link_expires_at LIMIT 1),
    (SELECT expires_at FROM credentials
     WHERE status = 'active' AND expires_at IS NOT NULL
     ORDER BY expires_at LIMIT 1)
)
