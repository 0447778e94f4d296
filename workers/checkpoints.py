"""The checkpoint worker: runs the signing round (service/audit/signing_round.py) whenever a
checkpoint may be due, so the hash chain is signed every N events or M minutes and each
checkpoint is published off the database.

Waking: LISTEN on the append channel (a batch of appends may complete N events) and the
injectable clock for the M-minute deadline (a ManualClock wakes it when a test moves it), at
most `idle_timeout` real seconds. Database and NATS outages restart the loop with capped,
jittered back-off (workers/base); anything else ends it, for the runner to report.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from events.clock import Clock, SystemClock
from service.audit.published import CheckpointStream
from service.audit.publisher import Publisher
from service.audit.signed import Checkpoint
from service.audit.signing_round import EVERY, MINUTES, SigningRound, SigningStats
from service.backoff import Backoff
from service.crypto.signing import KeyRing
from service.settings import ConfigError
from workers.base.sleeper import Listening, Sleeper
from workers.base.supervise import supervise
from workers.base.watch import Watched

if TYPE_CHECKING:
    from service.settings import Settings

log = structlog.get_logger("workers.checkpoints")


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = EVERY  # events between checkpoints
    minutes: float = MINUTES  # longest an event waits for a checkpoint
    idle_timeout: float = 60.0  # longest sleep (s): bounds a NOTIFY lost while reconnecting
    settle: float = 0.1  # after a NOTIFY, wait this long (s): one look per burst
    restart_max: float = 30.0  # back-off cap when the database is unreachable

    def __post_init__(self) -> None:
        if self.every < 1 or self.minutes <= 0 or self.idle_timeout <= 0:
            raise ValueError("needs every >= 1, minutes > 0 and idle_timeout > 0")


@dataclass
class CheckpointStats(SigningStats):
    sleeping: bool = False
    asleep_until: datetime | None = None  # the deadline it sleeps toward (None: none, awake)


class CheckpointWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        keyring: KeyRing,
        *,
        config: CheckpointConfig | None = None,
        clock: Clock | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._config = config or CheckpointConfig()
        self._clock = clock or SystemClock()
        self._watch = Watched(CheckpointStats())
        self.stats = self._watch.stats
        self._round = SigningRound(
            pool, keyring, every=self._config.every, minutes=self._config.minutes,
            clock=self._clock, publisher=publisher, stats=self.stats,
            changed=self._watch.changed,
        )  # fmt: skip
        self._restart = Backoff(0.5, self._config.restart_max)
        self._sleeper = Sleeper(self._clock, self._watch, settle=self._config.settle)

    async def run(self) -> None:
        """Sign as checkpoints fall due, until cancelled (or until a bug ends it)."""
        if self._publisher is not None:
            await self._publisher.ready()  # a bad stream is named before it is needed
        try:
            await supervise("checkpoints", self._session, self._restart)
        finally:
            if self._publisher is not None:
                await self._publisher.close()

    async def run_once(self, *, force: bool = False) -> list[Checkpoint]:
        """One round: the checkpoints now due (with `force`, the head's too), signed; then
        those not yet published, published."""
        return await self._round.run_once(force=force)

    async def wait_for(self, predicate: Callable[[CheckpointStats], bool]) -> CheckpointStats:
        """Until `predicate(stats)` holds after a change (bound it with `asyncio.timeout`)."""
        return await self._watch.wait_for(predicate)

    async def _session(self) -> None:
        async with Listening(self._pool) as wakeups:
            while True:
                wakeups.clear()
                await self.run_once()
                self._restart.reset()
                deadline = await self._round.next_deadline()
                await self._sleeper.sleep(wakeups, deadline, self._config.idle_timeout)
                if wakeups.lost:
                    raise ConnectionError("the LISTEN connection was lost")


def checkpoint_worker(settings: Settings, pool: asyncpg.Pool) -> Coroutine[Any, Any, None]:
    """The worker as `workers.runner` runs it: the system clock, the settings' cadence."""
    if not settings.secret_key:
        raise ConfigError("AUTHLEDGER_SECRET_KEY: required by the checkpoint worker (signing)")
    config = CheckpointConfig(every=settings.checkpoint_every, minutes=settings.checkpoint_minutes)
    publisher = Publisher(settings.nats_url, CheckpointStream.from_settings(settings))
    worker = CheckpointWorker(
        pool, KeyRing(settings.secret_key), config=config, publisher=publisher
    )
    return worker.run()
