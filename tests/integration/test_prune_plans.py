"""The bounded prunes that requests run (no worker: each request removes up to a batch of
expired rows) read their table's expiry index and stop at the first row still kept.

Before their ORDER BY, each prune's plan on a table not yet analyzed (a new deployment, a
table that grew fast since its last analyze, or a generic plan) read every row to find none
expired: for the replay guard that was under the append lock, every batch, 0.7 ms at 6,600
pairs and growing with them. Here a temporary table of the same shape, filled and never
analyzed, stands in for the real one (pg_temp comes first in the search path), in a
transaction that is rolled back, and EXPLAIN ANALYZE runs the statement exactly as the
service sends it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from service.commands import claim_grant, jti
from service.ratelimit import store as rate_limits

ISSUER = "https://agents.example.net"
ROWS = 6_600


def scanned_whole(plan: dict[str, Any]) -> list[str]:
    """The relations a plan (EXPLAIN's JSON) reads with a sequential scan, at any depth."""
    found = [plan["Relation Name"]] if plan["Node Type"] == "Seq Scan" else []
    for child in plan.get("Plans", []):
        found += scanned_whole(child)
    return found


async def plan_on_fresh_copy(
    pool: asyncpg.Pool, table: str, fill: str, statement: str, *args: Any
) -> dict[str, Any]:
    """`statement`'s executed plan, with the buffers it used, against an unanalyzed copy of
    `table` filled by `fill` (a temporary table: its blocks are counted as local)."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL)")
            await conn.execute(fill)
            explain = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}"
            [row] = await conn.fetch(explain, *args)
        finally:
            await tx.rollback()
    plan: dict[str, Any] = json.loads(row[0])[0]["Plan"]
    return plan


@pytest.mark.parametrize("statement", ["remember_jti", "remember_jtis"])
async def test_the_replay_guard_prunes_through_its_index(
    pool: asyncpg.Pool, statement: str
) -> None:
    now = datetime.now(UTC)
    kept = now + timedelta(minutes=5)
    args: tuple[Any, ...] = ("default", ISSUER, "j-new", kept, now, jti.PRUNE_BATCH)
    if statement == "remember_jtis":
        args = (["default"], [ISSUER], ["j-new"], [kept], now, jti.PRUNE_BATCH)
    fill = (
        "INSERT INTO seen_jtis (tenant_id, issuer, jti, keep_until) "
        f"SELECT 'default', '{ISSUER}', 'j-' || g, now() + interval '5 min' + g * interval '1 ms' "
        f"FROM generate_series(1, {ROWS}) g"
    )
    plan = await plan_on_fresh_copy(pool, "seen_jtis", fill, jti.Q[statement], *args)
    assert scanned_whole(plan) == []


async def test_the_claim_poll_pacing_prunes_through_its_index(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    fill = (
        "INSERT INTO claim_polls (claim_token_hash, tenant_id, last_poll_at, interval_s, "
        "too_fast) SELECT 'h-' || g, 'default', now() - g * interval '1 ms', 5, false "
        f"FROM generate_series(1, {ROWS}) g"
    )
    statement = claim_grant.Q["prune_polls"]
    plan = await plan_on_fresh_copy(
        pool, "claim_polls", fill, statement, now - claim_grant.PRUNE_AFTER, claim_grant.PRUNE_BATCH
    )
    assert scanned_whole(plan) == []


async def test_the_rate_limiter_prunes_through_its_index(pool: asyncpg.Pool) -> None:
    """The prune runs inside rate_limit_take (PL/pgSQL), where EXPLAIN shows no plan: the
    blocks the call reads tell instead. A scan of the 6,600 live windows reads them all."""
    now = datetime.now(UTC)
    fill = (
        "INSERT INTO rate_limit_windows (bucket, window_no, hits, expires_at) "
        "SELECT 'register:60:default:' || md5(g::text), 1, 1, now() + interval '2 min' "
        f"FROM generate_series(1, {ROWS}) g"
    )
    args = (
        ["register:60:default:probe"], [1], [30_000_000], [60_000_000], [100],
        [now + timedelta(minutes=2)], now, rate_limits.PRUNE_BATCH,
    )  # fmt: skip
    plan = await plan_on_fresh_copy(pool, "rate_limit_windows", fill, rate_limits.Q["take"], *args)
    read = plan["Local Hit Blocks"] + plan["Local Read Blocks"]
    assert read < 20, f"{read} blocks read for one hit"
