"""Pooled connections that keep session state past a query, and the pool reset that cleans
only those.

asyncpg's default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
on every release: a round trip and four statements after each of a worker's many short
queries (a fifth of `authledger worker`'s busy CPU under registrations, issue 11). Here only a
LISTEN (events.store.Wakeups, the mailer) and a session advisory lock (the JetStream
publishers' single-instance lock) outlive a query; nothing sets a session variable (the
append's settings are transaction-local). Their code marks the connection with
`keeps_session_state` before taking the state, and a pool made with `reset=reset_if_marked`
gives those the full reset on release and every other connection back as it is (asyncpg has
already rolled back a transaction left open and dropped its client-side listeners).
"""

from __future__ import annotations

import asyncpg

from events.sql import Conn

# Backend pids, not connection objects: a pool hands out proxies and resets the connection
# behind them. A pid marked by a connection that then died without a release is at worst
# given one needless full reset by a later backend that gets the same pid.
_MARKED: set[int] = set()


def keeps_session_state(conn: Conn) -> None:
    """Mark `conn` for the full reset when it goes back to its pool."""
    _MARKED.add(conn.get_server_pid())


async def reset_if_marked(conn: asyncpg.Connection) -> None:
    """A pool's `reset`: the full reset for a marked connection, nothing for the others."""
    pid = conn.get_server_pid()
    if pid in _MARKED:
        _MARKED.discard(pid)
        await conn.reset()
