"""The mailer's round statements on a long queue: what each reads does not grow with the
number of pending mails, nor with the mails sent since the last vacuum. A temporary copy of
mail_outbox (pg_temp comes first in the search path) holds 6,600 pending mails, a few of
them past their link's end, in a transaction that is rolled back; EXPLAIN ANALYZE runs each
statement exactly as the mailer sends it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.support.plans import rows_read
from workers.mailer import Q

PENDING = 6_600
EXPIRED = 5  # of them, past their link's end
FILL = (
    "INSERT INTO mail_outbox (attempt_id, tenant_id, recipient_sealed, link_token_sealed, "
    "link_expires_at, created_at, status, tries, next_try_at) "
    "SELECT 'att_' || g, 'default', 'pii1.s.x', '\\x01'::bytea, "
    f"CASE WHEN g <= {EXPIRED} THEN now() - interval '1 min' ELSE now() + interval '15 min' END, "
    "now(), 'pending', 0, now() - g * interval '1 ms' "
    f"FROM generate_series(1, {PENDING}) g"
)


# all but the last 16 sent, as a drained burst leaves them before a vacuum: every index
# still holds an entry for each row's pending version
SEND_MOST = (
    "UPDATE mail_outbox SET status = 'sent', sent_at = now(), link_token_sealed = ''::bytea "
    "WHERE attempt_id NOT IN "
    f"(SELECT 'att_' || g FROM generate_series({PENDING - 15}, {PENDING}) g)"
)


async def executed_plan(
    pool: asyncpg.Pool, statement: str, *args: Any, before: tuple[str, ...] = ()
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(
                "CREATE TEMP TABLE mail_outbox (LIKE public.mail_outbox INCLUDING ALL)"
            )
            await conn.execute(FILL)
            for setup in before:
                await conn.execute(setup)
            await conn.execute("ANALYZE mail_outbox")
            [row] = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args)
        finally:
            await tx.rollback()
    plan: dict[str, Any] = json.loads(row[0])[0]["Plan"]
    return plan


async def test_expiring_reads_the_expired_mails_not_the_queue(pool: asyncpg.Pool) -> None:
    plan = await executed_plan(pool, Q["expire"], datetime.now(UTC))
    assert plan["Actual Rows"] == EXPIRED  # the statement did its job
    assert rows_read(plan) <= 2 * EXPIRED, plan


async def test_claiming_reads_a_batch_not_the_queue(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    plan = await executed_plan(pool, Q["claim"], now, now + timedelta(minutes=2), 16)
    assert plan["Actual Rows"] == 16
    assert rows_read(plan) <= 4 * 16, plan


async def test_marking_sent_reads_its_rows_not_the_sent_ones(pool: asyncpg.Pool) -> None:
    """A lane's share marked sent after a burst: key probes, not the pending-expiry index's
    entries of the rows sent before (with `status = 'pending'` it read all 6,600 of the
    index's entries: 6,608 rows in all)."""
    share = [f"att_{g}" for g in range(PENDING - 3, PENDING + 1)]
    plan = await executed_plan(pool, Q["mark_sent"], share, datetime.now(UTC), before=(SEND_MOST,))
    assert rows_read(plan) <= 2 * len(share), plan
    [scan] = plan["Plans"]  # the update's one input: the rows it changed
    assert scan["Actual Rows"] == len(share), plan
