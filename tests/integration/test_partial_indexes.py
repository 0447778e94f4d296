"""The indexes that keep no NULL entries (migrations/0023) still serve every statement that
searches them. Temporary copies of registrations and credentials (pg_temp comes first in the
search path; LIKE ... INCLUDING ALL copies the partial indexes with their predicates) hold
6,000 rows each, nearly all with the searched column NULL, as anonymous registrations leave
it, in a transaction that is rolled back; EXPLAIN ANALYZE runs each statement as it is sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg

from projections.credentials import Q as CREDENTIALS
from projections.registrations import Q as REGISTRATIONS
from service.audit.subjects import Q as SUBJECTS
from tests.support.plans import rows_read

ROWS = 6_000
WITH_VALUE = 3  # rows whose searched column holds a value
FILL = (
    # registrations: the first few with a claim attempt under way
    "INSERT INTO registrations (registration_id, tenant_id, kind, status, "
    "requested_credential_type, claim_token_hash, expires_at, attempt_token_hash, version, "
    "created_at, updated_at) "
    "SELECT 'reg_' || g, 'default', 'anonymous', 'unclaimed', 'api_key', 'c' || g, now(), "
    f"CASE WHEN g <= {WITH_VALUE} THEN 'a' || g END, 1, now(), now() "
    f"FROM generate_series(1, {ROWS}) g",
    # credentials: the first few a user's, the next few a delegation's, all active
    "INSERT INTO credentials (credential_id, tenant_id, kind, token_hash, scopes, issued_via, "
    "registration_id, user_id, delegation_id, status, issued_at, version) "
    "SELECT 'crd_' || g, 'default', 'api_key', 't' || g, ARRAY['x'], 'anonymous', 'reg_' || g, "
    f"CASE WHEN g <= {WITH_VALUE} THEN 'usr_1' END, "
    f"CASE WHEN g > {WITH_VALUE} AND g <= {2 * WITH_VALUE} THEN 'dlg_1' END, "
    f"'active', now(), 1 FROM generate_series(1, {ROWS}) g",
)
PARTIAL = {
    "registrations": ("attempt_token_hash",),
    "credentials": ("user_id", "delegation_id"),
}


async def executed_plan(pool: asyncpg.Pool, statement: str, *args: Any) -> dict[str, Any]:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            for table in PARTIAL:
                await conn.execute(f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL)")
            for fill in FILL:
                await conn.execute(fill)
            for table in PARTIAL:
                await conn.execute(f"ANALYZE {table}")
            [row] = await conn.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *args)
        finally:
            await tx.rollback()
    plan: dict[str, Any] = json.loads(row[0])[0]["Plan"]
    return plan


async def test_the_indexes_keep_no_null_entries(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT t.relname AS table_name, a.attname AS column_name, "
        "pg_get_expr(i.indpred, i.indrelid) AS predicate "
        "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE t.relnamespace = 'public'::regnamespace AND i.indnatts = 1 "
        "AND t.relname = ANY($1::text[])",
        list(PARTIAL),
    )
    predicates = {(r["table_name"], r["column_name"]): r["predicate"] or "" for r in rows}
    for table, columns in PARTIAL.items():
        for column in columns:
            assert f"{column} IS NOT NULL" in predicates[(table, column)], predicates


async def test_an_attempt_link_is_found_by_its_index(pool: asyncpg.Pool) -> None:
    plan = await executed_plan(pool, REGISTRATIONS["by_attempt_token"], "a2")
    assert plan["Actual Rows"] == 1
    assert rows_read(plan) <= 2, plan


async def test_a_users_credentials_are_found_by_their_index(pool: asyncpg.Pool) -> None:
    plan = await executed_plan(pool, CREDENTIALS["active_of_user"], "default", "usr_1", 100)
    assert plan["Actual Rows"] == WITH_VALUE
    assert rows_read(plan) <= 2 * WITH_VALUE, plan
    plan = await executed_plan(pool, SUBJECTS["credentials_of_user"], "default", "usr_1")
    assert plan["Actual Rows"] == WITH_VALUE
    assert rows_read(plan) <= 2 * WITH_VALUE, plan


async def test_a_delegations_credentials_are_found_by_their_index(pool: asyncpg.Pool) -> None:
    later = datetime(2100, 1, 1, tzinfo=UTC)  # issued before it: every one of them
    plan = await executed_plan(pool, CREDENTIALS["active_of_delegation"], "default", "dlg_1", later)
    assert plan["Actual Rows"] == WITH_VALUE
    assert rows_read(plan) <= 2 * WITH_VALUE, plan
