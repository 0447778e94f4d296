"""The shared counters: one Postgres function call per check, whatever the number of tiers.

`rate_limit_take` (migrations/0013_rate_limits_exact.sql) takes a hit from each bucket in
order or from none, and names the first that refused with its two windows' hits. Every
replica counts in the same rows, so a limit holds across processes and restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from events.sql import load_queries
from service.ratelimit.window import Window

Q = load_queries("service.ratelimit", "store.sql")
PRUNE_BATCH = 50  # expired rows an admitted check removes on its way: bounded, no worker


@dataclass(frozen=True, slots=True)
class Hit:
    """One bucket to take a hit from: its key, its limit and where now falls in its period."""

    bucket: str
    limit: int
    window: Window


@dataclass(frozen=True, slots=True)
class Refusal:
    index: int  # which of the hits refused (0-based)
    current: int  # hits in its current window
    previous: int  # hits in its previous window


class WindowStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def take(self, hits: Sequence[Hit], now: datetime) -> Refusal | None:
        """Count `hits` (all or none); None when every one was admitted."""
        row = await self.pool.fetchrow(
            Q["take"],
            [h.bucket for h in hits],
            [h.window.number for h in hits],
            [h.window.remaining_us for h in hits],
            [h.window.period_us for h in hits],
            [h.limit for h in hits],
            [h.window.expires_at for h in hits],
            now,
            PRUNE_BATCH,
        )
        if row is None or row["refused"] == 0:
            return None
        return Refusal(row["refused"] - 1, row["current_hits"], row["previous_hits"])
