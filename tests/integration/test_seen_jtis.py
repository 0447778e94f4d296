"""The replay memory of (iss, jti) pairs (service/commands/jti.py) on real Postgres, as the
runtime role: a pair is burned once, and every burn prunes expired pairs, so the table stays
bounded with no worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
import pytest

from service.commands.jti import PRUNE_BATCH, remember_jti
from service.domain.errors import ProtocolError

ISSUER = "https://agents.example.net"


async def burn(pool: asyncpg.Pool, jti: str, keep_until: datetime, now: datetime) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await remember_jti("default", ISSUER, jti, keep_until, now)(cast(asyncpg.Connection, conn))


async def held(pool: asyncpg.Pool) -> set[str]:
    return {r["jti"] for r in await pool.fetch("SELECT jti FROM seen_jtis")}


async def test_a_pair_burns_once(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    await burn(pool, "j-1", now + timedelta(minutes=5), now)
    with pytest.raises(ProtocolError) as refused:
        await burn(pool, "j-1", now + timedelta(minutes=5), now)
    assert refused.value.code == "replay_detected"
    assert await held(pool) == {"j-1"}


async def test_each_burn_prunes_expired_pairs_up_to_its_batch(pool: asyncpg.Pool) -> None:
    """Expired pairs go, a batch at a time, as new pairs come; live ones stay."""
    now = datetime.now(UTC)
    expired = PRUNE_BATCH + 5
    for i in range(expired):
        await burn(pool, f"old-{i}", now - timedelta(minutes=1), now - timedelta(minutes=10))
    await burn(pool, "live", now + timedelta(minutes=5), now - timedelta(minutes=10))
    assert len(await held(pool)) == expired + 1  # nothing had expired at that `now`
    await burn(pool, "new-1", now + timedelta(minutes=5), now)
    assert len(await held(pool)) == expired + 2 - PRUNE_BATCH
    await burn(pool, "new-2", now + timedelta(minutes=5), now)
    assert await held(pool) == {"live", "new-1", "new-2"}


async def test_a_refused_replay_prunes_nothing(pool: asyncpg.Pool) -> None:
    """The replay's transaction rolls back whole: its prune with it."""
    now = datetime.now(UTC)
    await burn(pool, "old", now - timedelta(minutes=1), now - timedelta(minutes=10))
    await burn(pool, "j", now + timedelta(minutes=5), now - timedelta(minutes=10))
    with pytest.raises(ProtocolError):
        await burn(pool, "j", now + timedelta(minutes=5), now)
    assert await held(pool) == {"old", "j"}
