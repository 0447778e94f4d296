"""The checkpoint worker: signs the hash chain every N events or M minutes.

A round takes the last checkpoint (or the genesis), recomputes the chain from it over the
events since (service.audit.verify.walk: the signer vouches only for a chain it checked), and
signs `(position, chain hash there, signed_at)` with the service's active EdDSA key
(service.signing.KeyRing) as a compact JWS (service.audit.signed), stored in
`chain_checkpoints` with the key's public JWK in `chain_checkpoint_keys`. Positions signed:
every `every` events after the last checkpoint, and the head once its oldest unsigned event
has waited `minutes` (so every event is anchored within N events or M minutes of being
recorded). A broken chain is logged (`checkpoints.chain_broken`) and nothing is signed.

Off the database (workers/checkpoint_publisher.py): each checkpoint is also published to a
JetStream stream that refuses deletes and purges, and a round signs nothing while the log
disagrees with the newest published checkpoint (`checkpoints.published_contradicted`: its
tail was cut or rewritten after it was anchored).

Waking: LISTEN on the append channel (a batch of appends may complete N events) and the
injectable clock for the M-minute deadline (a ManualClock wakes it when a test moves it).
Rounds run under a transaction-level advisory lock, so several workers never sign twice;
a checkpoint at a position already signed is kept as it is. Database outages restart the
loop with capped back-off. `sign_now` is the same round forced to sign the head at once
(exports ask for it, so what they prove is anchored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from events.clock import Clock, SystemClock, sleep_until
from events.hashchain import GENESIS
from events.sql import Conn, load_queries
from events.store import Wakeups
from service.audit.published import CheckpointStream
from service.audit.signed import Checkpoint, Jwk, sign
from service.audit.verify import walk
from service.settings import ConfigError
from service.signing import KeyRing
from workers.checkpoint_publisher import Publisher

if TYPE_CHECKING:
    from service.settings import Settings

LOCK = 0x6175_7468_636B_7074  # "authckpt"
Q = load_queries("workers", "checkpoints.sql")
log = structlog.get_logger("workers.checkpoints")


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 1000  # events between checkpoints
    minutes: float = 5.0  # longest an event waits for a checkpoint
    idle_timeout: float = 60.0  # longest sleep (s): bounds a NOTIFY lost while reconnecting
    settle: float = 0.1  # after a NOTIFY, wait this long (s): one look per burst
    restart_max: float = 30.0  # back-off cap when the database is unreachable

    def __post_init__(self) -> None:
        if self.every < 1 or self.minutes <= 0 or self.idle_timeout <= 0:
            raise ValueError("needs every >= 1, minutes > 0 and idle_timeout > 0")


@dataclass
class CheckpointStats:
    signed: int = 0  # checkpoints this worker wrote
    last_position: int = 0  # the last one it wrote
    broken: int = 0  # rounds that found the chain broken
    contradicted: int = 0  # rounds that found the log disagreeing with what was published
    published: int = 0  # checkpoints this worker published off the database
    published_position: int = 0  # the newest published position it knows of
    asleep_until: datetime | None = None  # the deadline it sleeps toward (None: none, awake)
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


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
        self._keyring = keyring
        self._publisher = publisher
        self._config = config or CheckpointConfig()
        self._clock = clock or SystemClock()
        self.stats = CheckpointStats()

    async def run(self) -> None:
        """Sign as checkpoints fall due, forever; outages restart the loop after a pause."""
        delay = 0.5
        if self._publisher is not None:
            await self._publisher.ready()  # a bad stream is named before it is needed
        try:
            while True:
                try:
                    await self._session()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("checkpoints.restart", error=type(exc).__name__, delay=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._config.restart_max)
        finally:
            if self._publisher is not None:
                await self._publisher.close()

    async def run_once(self, *, force: bool = False) -> list[Checkpoint]:
        """One round: the checkpoints now due (with `force`, the head's too), signed; then
        those not yet published, published."""
        async with self._pool.acquire() as conn:
            signed: list[Checkpoint] = []
            refused = self.stats.contradicted
            if force or await self._due(conn):
                async with conn.transaction():
                    await conn.execute(Q["lock"], LOCK)
                    signed = await self._round(conn, force)
            if (
                self._publisher is not None
                and self.stats.contradicted == refused  # this round said it already
                and (signed or (await self._last(conn))[0] > self._publisher.position)
            ):
                await self._publish(conn, self._publisher)
            return signed

    async def wait_for(self, predicate: Callable[[CheckpointStats], bool]) -> CheckpointStats:
        """Return once `predicate(stats)` holds (callers bound it with a timeout)."""
        while not predicate(self.stats):
            self.stats.changed.clear()
            await self.stats.changed.wait()
        return self.stats

    async def _session(self) -> None:
        async with Wakeups(self._pool) as wakeups:
            while True:
                wakeups.clear()
                await self.run_once()
                async with self._pool.acquire() as conn:
                    deadline = await self._deadline(conn, await self._last(conn))
                await self._sleep(wakeups, deadline)

    async def _sleep(self, wakeups: Wakeups, deadline: datetime | None) -> None:
        """Until an append is notified, the deadline passes, or the idle timeout."""
        self.stats.asleep_until = deadline
        self.stats.changed.set()
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(
                wakeups.wait(self._config.idle_timeout, settle=self._config.settle)
            )
        ]
        if deadline is not None:
            waits.append(asyncio.ensure_future(sleep_until(self._clock, deadline)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.stats.asleep_until = None
            for task in waits:
                task.cancel()
            for task in waits:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _last(self, conn: Conn) -> tuple[int, bytes]:
        row = await conn.fetchrow(Q["last"])
        return (row["position"], row["chain_hash"]) if row is not None else (0, GENESIS)

    async def _deadline(self, conn: Conn, last: tuple[int, bytes]) -> datetime | None:
        """When the oldest unsigned event will have waited `minutes` (None: none waits)."""
        recorded = await conn.fetchval(Q["recorded_at"], last[0] + 1)
        if recorded is None:
            return None
        deadline: datetime = recorded + timedelta(minutes=self._config.minutes)
        return deadline

    async def _due(self, conn: Conn) -> bool:
        last = await self._last(conn)
        head = int(await conn.fetchval(Q["head"]))
        if head - last[0] >= self._config.every:
            return True
        deadline = await self._deadline(conn, last)
        return deadline is not None and deadline <= self._clock.now()

    async def _round(self, conn: Conn, force: bool) -> list[Checkpoint]:
        after, prev = await self._last(conn)
        head = int(await conn.fetchval(Q["head"]))
        targets = list(range(after + self._config.every, head + 1, self._config.every))
        deadline = await self._deadline(conn, (after, prev))
        now = self._clock.now()
        if head > after and (force or (deadline is not None and deadline <= now)):
            targets.append(head)
        if not targets:
            return []
        result = await walk((conn,), after=after, prev_hash=prev, until=max(targets))
        if result.problem is not None:
            self.stats.broken += 1
            self.stats.changed.set()
            problem = result.problem
            log.error("checkpoints.chain_broken", position=problem.position, reason=problem.reason)
            return []
        hashes = {r["position"]: r["hash"] for r in await conn.fetch(Q["hashes"], targets)}
        await self._keyring.load(self._pool)  # another process may have rotated the key
        if self._publisher is not None and not await self._agrees(conn, self._publisher):
            return []
        key = self._keyring.active
        if key is None:
            key = await self._keyring.ensure_active(self._pool, now)
        await conn.execute(Q["insert_key"], key.kid, json.dumps(key.public_jwk), now)
        signed = []
        for position in sorted(set(targets)):
            checkpoint = sign(
                private_key=key.private_key,
                kid=key.kid,
                position=position,
                chain_hash=hashes[position],
                at=now,
            )
            await conn.execute(
                Q["insert"],
                position,
                checkpoint.chain_hash,
                key.kid,
                checkpoint.signed_at,
                checkpoint.jws,
            )
            signed.append(checkpoint)
        self.stats.signed += len(signed)
        self.stats.last_position = signed[-1].position
        self.stats.changed.set()
        log.info("checkpoints.signed", positions=[c.position for c in signed], kid=key.kid)
        return signed

    def _public_keys(self) -> dict[str, Jwk]:
        return {key.kid: key.public_jwk for key in self._keyring.keys}

    async def _agrees(self, conn: Conn, publisher: Publisher) -> bool:
        agrees = await publisher.agrees(conn, self._public_keys())
        self._count(publisher)
        return agrees

    async def _publish(self, conn: Conn, publisher: Publisher) -> None:
        """The database's checkpoints above the newest published one, published in order."""
        await self._keyring.load(self._pool)
        async with conn.transaction():
            await conn.execute(Q["lock"], LOCK)
            await publisher.publish(conn, self._public_keys())
        self._count(publisher)

    def _count(self, publisher: Publisher) -> None:
        stats = self.stats
        stats.published, stats.contradicted = publisher.published, publisher.contradicted
        stats.published_position = publisher.position
        stats.changed.set()


async def sign_now(
    pool: asyncpg.Pool, keyring: KeyRing, clock: Clock, publisher: Publisher | None = None
) -> list[Checkpoint]:
    """Sign the head now (and whatever else is due), e.g. before an export; with a publisher,
    publish what is not published yet too."""
    return await CheckpointWorker(pool, keyring, clock=clock, publisher=publisher).run_once(
        force=True
    )


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
