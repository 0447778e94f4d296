"""events.planning against a real Postgres, which counts the generic and custom plans of
each prepared statement a session holds (`pg_prepared_statements`)."""

from __future__ import annotations

import asyncpg

from events.planning import fetch_planned_now
from events.sql import Conn

# a lane's share marked sent: a key lookup by array, as the mailer's are
LOOKUP = "SELECT attempt_id FROM mail_outbox WHERE attempt_id = ANY ($1::text[])"
IDS = [f"att_{n}" for n in range(16)]
RUNS = 8  # past the five custom plans after which Postgres may keep a generic one


async def generic_plans(conn: Conn) -> int:
    found = await conn.fetchval(
        "SELECT coalesce(sum(generic_plans), 0) FROM pg_prepared_statements WHERE statement = $1",
        LOOKUP,
    )
    return int(found)


async def test_a_statement_planned_now_never_runs_a_kept_plan(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for _ in range(RUNS):
            assert await fetch_planned_now(conn, LOOKUP, IDS) == []
        assert await generic_plans(conn) == 0


async def test_the_connections_cached_statement_keeps_a_generic_plan(pool: asyncpg.Pool) -> None:
    """What fetch_planned_now avoids: the same query through asyncpg's statement cache."""
    async with pool.acquire() as conn:
        for _ in range(RUNS):
            assert await conn.fetch(LOOKUP, IDS) == []
        assert await generic_plans(conn) > 0


async def test_a_pool_lends_a_connection(pool: asyncpg.Pool) -> None:
    rows = await fetch_planned_now(pool, "SELECT $1::int + 1 AS n", 41)
    assert [r["n"] for r in rows] == [42]
