"""The next-deadline look (projections/deadlines.sql) as a long-lived worker connection keeps
it: asyncpg prepares it once (again only after 300 s), and Postgres keeps the plan made
then, on the tables as they were. On a new deployment they are empty; min() over the active
credentials was then planned as an aggregate over the issuer's partial index, which read
every active credential at every look of the expiry worker while that plan lasted (8-18 ms
at 30,000 credentials). The plan that connection keeps must probe each deadline index for
one entry.

The rows are the owner's (whose writes the guards leave unchecked: they have no events behind
them), written on a connection of its own once the runtime's has made its plan.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from projections.deadlines import Q, next_deadline

ACTIVE = 3_000


def scans(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Every scan node of a plan (EXPLAIN's JSON) and the index it reads, at any depth."""
    found = [(plan["Node Type"], plan.get("Index Name"))] if "Scan" in plan["Node Type"] else []
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def test_a_plan_made_on_empty_tables_still_probes_the_deadline_indexes(
    pool: asyncpg.Pool, owner_database_url: str
) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    async with pool.acquire() as conn:
        assert await next_deadline(conn) is None  # prepared and planned now, on empty tables
        owner = await asyncpg.connect(owner_database_url)
        try:
            await owner.execute(
                "INSERT INTO credentials (credential_id, tenant_id, kind, token_hash, scopes, "
                "issued_via, status, expires_at, issued_at, version, issuer) "
                "SELECT 'cred_' || g, 'default', 'api_key', 'h' || g, '{}', 'id_jag', 'active', "
                "$1::timestamptz + g * interval '1 s', now(), 1, 'https://agents.example.net' "
                f"FROM generate_series(1, {ACTIVE}) g",
                soon,
            )
        finally:
            await owner.close()
        assert await next_deadline(conn) == soon + timedelta(seconds=1)
        name = await conn.fetchval(
            "SELECT name FROM pg_prepared_statements WHERE statement = $1", Q["next_deadline"]
        )
        [row] = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}")
    plan = json.loads(row[0])[0]["Plan"]
    assert sorted(scans(plan)) == [
        ("Index Only Scan", "credentials_active_expiry_idx"),
        ("Index Only Scan", "registrations_live_link_expiry_idx"),
        ("Index Only Scan", "registrations_open_expiry_idx"),
    ]
    assert plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] < 20
