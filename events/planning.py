"""Statements planned for the tables as they are now, not from a plan kept for the session.

Postgres plans a prepared statement for its arguments five times, then may keep one generic
plan for the rest of the session, made with the table sizes and statistics of that moment,
and makes another only when something invalidates it (an ANALYZE, a schema change).
asyncpg prepares every query once per connection and reuses it, and `authledger worker`'s
connections live long and first run while the tables are new and small. Where autovacuum
is off (as on issue 11's bench machine) or behind, its generic plans stay what they were:
the mailer's key read (`subject_keys ... = ANY`) kept a sequential scan made when the table
held a few hundred rows, and its sent-marking one made when the outbox was as small,
scanning 80,000 keys (10 ms a round) and 40,000 mails (10 ms a lane's share) later.

`fetch_planned_now` prepares the statement anew each time (one more round trip, the Parse),
so each run is planned for its own arguments and the tables' present size. It is for lone
statements that look up many keys at once in tables that grow, run a few times per unit of
work. Inside a transaction that sends statements anyway, the same is had for nothing with a
transaction-local `set_config('plan_cache_mode', 'force_custom_plan', true)`, as the
writer's checked path does with its lock (events/store.sql `lock`), and inside a function
with `EXECUTE ... USING`, as the row guards do (migrations/guards.sql); for a lone statement
the first would cost a transaction's two round trips more.

The one-trip append keeps the cache: its statements run per request, where a Parse more
would cost, and its single-key lookups are planned as index scans even on an empty table
(in issue 11's bench they read 4-9 blocks each; a plan made while a table held a few pages
of rows could still be a sequential scan, not seen so far).
"""

from __future__ import annotations

import asyncpg

from events.sql import Conn


async def fetch_planned_now(
    db: Conn | asyncpg.Pool, query: str, *args: object
) -> list[asyncpg.Record]:
    """The rows of `query` (none for a statement without RETURNING), as a statement of its
    own; a pool lends a connection for it."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await fetch_planned_now(conn, query, *args)
    statement = await db.prepare(query)
    return list(await statement.fetch(*args))
