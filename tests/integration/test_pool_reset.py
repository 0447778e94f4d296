"""events/sessions.py on real Postgres: a pooled connection that took session state (a LISTEN,
a session advisory lock) goes back clean; every other one goes back without a reset."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from events.sessions import keeps_session_state, reset_if_marked
from events.store import Wakeups

LOCK = 4242_4242


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """One connection, so every acquire gets the connection the last release gave back."""
    made = await asyncpg.create_pool(database_url, min_size=1, max_size=1, reset=reset_if_marked)
    try:
        yield made
    finally:
        await made.close()


async def _session_of(pool: asyncpg.Pool) -> tuple[int, str, list[str], int]:
    """(backend pid, application_name, LISTEN channels, advisory locks held)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT pg_backend_pid() AS pid, current_setting('application_name') AS app, "
            "ARRAY(SELECT pg_listening_channels()) AS channels, "
            "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            " AND pid = pg_backend_pid()) AS locks"
        )
    assert row is not None
    return row["pid"], row["app"], list(row["channels"]), row["locks"]


async def test_an_unmarked_connection_goes_back_without_a_reset(pool: asyncpg.Pool) -> None:
    """A session setting survives the release: no RESET ALL (no reset round trip) was sent."""
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        await conn.execute("SET application_name = 'left as it was'")
    assert await _session_of(pool) == (pid, "left as it was", [], 0)


async def test_a_marked_connection_is_reset_once(pool: asyncpg.Pool) -> None:
    """A connection marked before it took a lock and a LISTEN (and a setting) comes back
    without any of them, once; its next release is plain again."""
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        keeps_session_state(conn)
        await conn.execute("SET application_name = 'marked'")
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
        await conn.execute("LISTEN some_channel")
    assert await _session_of(pool) == (pid, "", [], 0)
    async with pool.acquire() as conn:
        await conn.execute("SET application_name = 'unmarked again'")
    assert await _session_of(pool) == (pid, "unmarked again", [], 0)


async def test_wakeups_leave_no_listen_behind(pool: asyncpg.Pool) -> None:
    """Wakeups marks its connection: its LISTEN ends with it, whatever its exit did."""
    async with Wakeups(pool) as wakeups:
        await wakeups.listening()
        assert Wakeups.listeners(pool) == 1
    _, _, channels, locks = await _session_of(pool)
    assert (channels, locks) == ([], 0)
