"""A row statement's column form (events.rows) writes exactly the rows `executemany` writes.

Against a real Postgres, as the owner (the read models' guards check the runtime's writes
only), in transactions rolled back: the same rows written row by row and through
`send_rows`, every column compared.
An UPDATE's rows are written first (`before`), beside one it must leave alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from events.rows import ColumnForm, form_of, send_rows
from events.sql import Conn
from projections import attempt_addresses, credentials, delegations, registrations
from service.crypto import pii
from service.mail import outbox

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
ATTEMPTS = [("reg_a", "cla_1", "th1", LATER, "ei1", 2, NOW),
            ("reg_b", "cla_2", "th2", NOW, None, 3, LATER)]  # fmt: skip
ADDRESSES = [("reg_a", "cla_1", "default", "ei1", "cla_1", NOW),
             ("reg_a", "cla_2", "default", "ei2", "reg_a", LATER),
             ("reg_b", "cla_3", "acme", "ei1", "cla_3", NOW)]  # fmt: skip
DELEGATIONS = [
    ("dlg_1", "default", "https://idp.example", "aud", "usr_1", "sub", NOW, 1),
    ("dlg_2", "acme", "https://idp.example", "aud", "usr_2", "email", NOW, 4),
    ("dlg_3", "default", "https://other.example", "aud", "usr_1", "sub", NOW, 1),
]
USES = [("dlg_1", LATER, 2), ("dlg_2", NOW + timedelta(seconds=1), 5)]
MAILS = [("cla_1", "default", "reg_a", "pii1.cla_1.blob", b"\x01sealed", LATER, NOW),
         ("cla_2", "acme", "reg_b", "pii1.cla_2.other", bytes(range(40)), NOW, LATER)]  # fmt: skip
Before = Sequence[tuple[str, list[tuple[Any, ...]]]]  # rows an UPDATE finds: (SQL, rows)


async def _rows_after(
    conn: Conn, table: str, write: Any, before: Before = ()
) -> list[asyncpg.Record]:
    transaction = conn.transaction()
    await transaction.start()
    try:
        for sql, rows in before:
            await conn.executemany(sql, rows)
        await write()
        return await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")
    finally:
        await transaction.rollback()


@pytest.mark.parametrize(
    ("row_sql", "table", "rows", "before"),
    [
        (registrations.Q["created"], "registrations", REGISTRATIONS, []),
        (credentials.Q["issued"], "credentials", CREDENTIALS, []),
        (pii.Q["insert_key"], "subject_keys", KEYS, []),
        (attempt_addresses.Q["started"], "attempt_addresses", ADDRESSES, []),
        (outbox.Q["enqueue"], "mail_outbox", MAILS, []),
        (
            registrations.Q["attempt_started"],
            "registrations",
            ATTEMPTS,
            [(registrations.Q["created"], REGISTRATIONS)],
        ),
        (delegations.Q["used"], "delegations", USES, [(delegations.Q["created"], DELEGATIONS)]),
    ],
    ids=[
        "registrations",
        "credentials",
        "subject_keys",
        "attempt_addresses",
        "mail_outbox",
        "registration_attempts",
        "delegation_uses",
    ],
)
async def test_the_column_form_writes_the_rows_executemany_writes(
    owner_pool: asyncpg.Pool,
    row_sql: str,
    table: str,
    rows: list[tuple[Any, ...]],
    before: Before,
) -> None:
    form = form_of(row_sql)
    assert form is not None
    assert form.columns(rows) is not None  # send_rows takes the form
    async with owner_pool.acquire() as conn:
        untouched = await _rows_after(conn, table, _nothing, before)
        one_by_one = await _rows_after(conn, table, lambda: conn.executemany(row_sql, rows), before)
        at_once = await _rows_after(conn, table, lambda: send_rows(conn, row_sql, rows), before)
    assert len(one_by_one) == (len(before[0][1]) if before else len(rows))
    if before:  # each row named is updated; the others are as they were
        named = {r[0] for r in rows}
        changed = [a for a, b in zip(one_by_one, untouched, strict=True) if a != b]
        assert {r[0] for r in changed} == named
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


async def _nothing() -> None:
    return None


async def test_a_mail_row_repeated_or_stored_is_queued_once(owner_pool: asyncpg.Pool) -> None:
    """A retried command's mail (its attempt id stored, or twice in one batch) adds no row and
    no second mail, whichever form writes it."""
    again = [MAILS[0], MAILS[1], (*MAILS[0][:4], b"\x02other", *MAILS[0][5:])]
    async with owner_pool.acquire() as conn:
        rows = await _rows_after(
            conn,
            "mail_outbox",
            lambda: send_rows(conn, outbox.Q["enqueue"], again),
            [(outbox.Q["enqueue"], [MAILS[0]])],
        )
    assert [(r["attempt_id"], bytes(r["link_token_sealed"])) for r in rows] == [
        ("cla_1", b"\x01sealed"),
        ("cla_2", bytes(range(40))),
    ]
