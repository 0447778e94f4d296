"""The next deadline the read models hold: when the oldest open registration, live claim
attempt or active credential falls due (past or future). The expiry worker sleeps toward it
and `/metrics` reports the lag behind it."""

from __future__ import annotations

from datetime import datetime

from events.sql import Conn, load_queries

Q = load_queries("projections", "deadlines.sql")


async def next_deadline(conn: Conn) -> datetime | None:
    """The oldest deadline not yet recorded; None when nothing waits for one."""
    deadline: datetime | None = await conn.fetchval(Q["next_deadline"])
    return deadline
