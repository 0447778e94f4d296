"""The shared memory of accepted `(iss, jti)` pairs (spec §7.3 replay, §8): one Postgres table
for every replica, written in the transaction of the events the token caused, so a token is
burned exactly when it took effect, and a rejected token burns nothing (W9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from events.appends import GroupedStep
from events.sql import load_queries
from service.commands.context import InTransaction
from service.domain.errors import ProtocolError

Q = load_queries("service.commands", "providers.sql")
PRUNE_BATCH = 100  # each remember removes up to this many expired entries: bounded, no worker


class SeenInBatch(Exception):
    """A batch's pairs held one already seen: the batch is committed again request by request,
    where remember_jti refuses the replay alone."""


def remember_jti(
    tenant_id: str, issuer: str, jti: str, keep_until: datetime, now: datetime
) -> InTransaction:
    """An in-transaction step that records the pair or refuses it as a replay (rolling back
    everything the token would have done). A batch's pairs go in one statement (GroupedStep)."""

    async def remember(conn: asyncpg.Connection) -> None:
        status = await conn.execute(
            Q["remember_jti"], tenant_id, issuer, jti, keep_until, now, PRUNE_BATCH
        )
        if status.endswith(" 0"):
            raise ProtocolError("replay_detected", "this token's jti was already used")

    return GroupedStep(
        "seen_jtis", (tenant_id, issuer, jti, keep_until, now), remember, _remember_all
    )


async def _remember_all(conn: asyncpg.Connection, pairs: list[tuple[Any, ...]]) -> None:
    columns = list(zip(*pairs, strict=True))
    added = await conn.fetchval(
        Q["remember_jtis"],
        list(columns[0]),
        list(columns[1]),
        list(columns[2]),
        list(columns[3]),
        max(columns[4]),
        PRUNE_BATCH,
    )
    if added != len(pairs):
        raise SeenInBatch(f"{len(pairs) - added} of {len(pairs)} pairs already seen")
