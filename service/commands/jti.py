"""The shared memory of accepted `(iss, jti)` pairs (spec §7.3 replay, §8): one Postgres table
for every replica, written in the transaction of the events the token caused, so a token is
burned exactly when it took effect, and a rejected token burns nothing (W9)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from events.sql import load_queries
from service.commands.context import InTransaction
from service.domain.errors import ProtocolError

Q = load_queries("service.commands", "providers.sql")
PRUNE_BATCH = 100  # each remember removes up to this many expired entries: bounded, no worker


def remember_jti(
    tenant_id: str, issuer: str, jti: str, keep_until: datetime, now: datetime
) -> InTransaction:
    """An in-transaction step that records the pair or refuses it as a replay (rolling back
    everything the token would have done)."""

    async def remember(conn: asyncpg.Connection) -> None:
        status = await conn.execute(
            Q["remember_jti"], tenant_id, issuer, jti, keep_until, now, PRUNE_BATCH
        )
        if status.endswith(" 0"):
            raise ProtocolError("replay_detected", "this token's jti was already used")

    return remember
