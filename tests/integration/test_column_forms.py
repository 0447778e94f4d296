"""A row statement's column form (events.rows) writes exactly the rows `executemany` writes.

Against a real Postgres, in transactions rolled back (the read models' guards check at
COMMIT): the same rows written row by row and through `send_rows`, every column compared.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from events.rows import ColumnForm, form_of, send_rows
from events.sql import Conn
from projections import credentials, registrations
from service.crypto import pii

NOW = datetime(2026, 12, 7, 11, 30, 15, 123456, tzinfo=UTC)
LATER = NOW + timedelta(days=1)

REGISTRATIONS = [
    ("reg_a", "default", "anonymous", "unclaimed", "api_key", "h1", LATER, "cred_a", 1, NOW,
     "v1", None),
    ("reg_b", "acme", "verified_email", "pending_claim", "access_token", "h2", LATER, None, 1,
     NOW + timedelta(microseconds=1), "0.6.0", "dlg_1"),
    ("reg_c", "default", "anonymous", "unclaimed", "api_key", "h3", NOW, "cred_c", 2, LATER,
     "v1", None),
]  # fmt: skip
CREDENTIALS = [
    ("cred_a", "default", "api_key", "t1", ["api.read"], "anonymous", "reg_a", None, None, NOW,
     1, None, None),
    ("cred_b", "acme", "access_token", "t2", ["api.read", "api.write"], "claim", "reg_b", "usr_1",
     LATER, NOW, 3, "https://idp.example", "dlg_1"),
    ("cred_c", "default", "api_key", "t3", [], "anonymous", None, None, None, LATER, 1, None,
     None),
]  # fmt: skip
KEYS = [("reg_a", b"\x00\x01wrapped"), ("reg_b", b"\x00"), ("reg_c", bytes(range(256)))]


async def _rows_after(conn: Conn, table: str, write: Any) -> list[asyncpg.Record]:
    transaction = conn.transaction()
    await transaction.start()
    try:
        await write()
        return await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")
    finally:
        await transaction.rollback()


@pytest.mark.parametrize(
    ("row_sql", "table", "rows"),
    [
        (registrations.Q["created"], "registrations", REGISTRATIONS),
        (credentials.Q["issued"], "credentials", CREDENTIALS),
        (pii.Q["insert_key"], "subject_keys", KEYS),
    ],
    ids=["registrations", "credentials", "subject_keys"],
)
async def test_the_column_form_writes_the_rows_executemany_writes(
    owner_pool: asyncpg.Pool, row_sql: str, table: str, rows: list[tuple[Any, ...]]
) -> None:
    form = form_of(row_sql)
    assert form is not None
    assert form.columns(rows) is not None  # send_rows takes the form
    async with owner_pool.acquire() as conn:
        one_by_one = await _rows_after(conn, table, lambda: conn.executemany(row_sql, rows))
        at_once = await _rows_after(conn, table, lambda: send_rows(conn, row_sql, rows))
    assert len(one_by_one) == len(rows)
    # subject_keys.created_at is now(): the transaction's start, not the rows'
    drop = {"created_at"} if table == "subject_keys" else set()
    assert [{k: v for k, v in r.items() if k not in drop} for r in at_once] == [
        {k: v for k, v in r.items() if k not in drop} for r in one_by_one
    ]


async def test_scopes_that_would_not_survive_joining_go_row_by_row(
    owner_pool: asyncpg.Pool,
) -> None:
    """A scope with a space, or an empty one, cannot be a space-joined text: those rows go
    with `executemany` and are still written as they are."""
    odd = [(*CREDENTIALS[0][:4], ["two words"], *CREDENTIALS[0][5:]),
           (*CREDENTIALS[2][:4], [""], *CREDENTIALS[2][5:])]  # fmt: skip
    form = ColumnForm("unused", joined=(4,))
    assert form.columns(odd) is None
    assert form.columns(CREDENTIALS) is not None
    async with owner_pool.acquire() as conn:
        written = await _rows_after(
            conn, "credentials", lambda: send_rows(conn, credentials.Q["issued"], odd)
        )
    assert [r["scopes"] for r in written] == [["two words"], [""]]
