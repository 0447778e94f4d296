"""The revocation feed: every credential-ending event of the log to JetStream, as a signed
message on `<prefix>.<tenant>.revocations`, exactly once and in log order.

A worker of its own, beside the relay (which publishes every event as it is): it tails the log
(woken by LISTEN/NOTIFY) for `credential.revoked` and `credential.expired`, turns each into a
revocation message (`workers/revocation_log.py`, format in `subscriber/wire.py`), signs it
with the service's active access-token key, publishes each window pipelined on one connection
(so the stream stores them in log order), waits for the acks, then writes its checkpoint.

Exactly once, without trusting JetStream's dedupe window:

- one publisher runs: it holds a session advisory lock named for its checkpoint
  (`revocations:<stream>`), on a connection that also writes the checkpoint, so a publisher
  whose session died cannot advance it (the relay's mechanism, `workers/relay.sql`);
- the checkpoint is a pair (C, S): every ending event at or below log position C is
  published, and every revocation message of a position above C lies above stream sequence
  S. So at start and after any failure the publisher reads only the revocation subjects
  (`<prefix>.*.revocations`, JetStream's next-by-subject lookup) from S + 1 to the end, notes
  the positions above C already stored, and skips them. S is written as the highest sequence
  acknowledged, or just below the lowest stored message of a position still above C;
- `Nats-Msg-Id` = `<event id>:revocation` only covers what a scan cannot see: a killed
  publisher's last publishes still in flight.

C also advances over stretches of the log with no ending event (written with the next
publication, on idle, or every `save_every` positions), so a restart never rereads them.
The scan does not look at the relay's messages and the relay's scan skips these (they carry
no `Authledger-Position`), so neither is confused by the other sharing the stream. Should the
stream be purged or made anew, nothing already checkpointed is published again: subscribers
notice the hole in the chain (`previous_position`) and resynchronise from
`GET /admin/revocations`.

Key rotation: the key ring is reloaded every `key_refresh` seconds; a message signed just
before a rotation stays verifiable, because the JWKS keeps retired keys while their tokens
live. NATS outages and Postgres blips are retried with capped exponential back-off; nothing but
cancellation ends `run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import nats.errors
import structlog
from asyncpg.pool import PoolConnectionProxy
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError, NotFoundError

from events.clock import Clock, SystemClock
from events.envelope import RecordedEvent
from events.sql import load_queries
from events.store import Wakeups
from service.domain.tenants import DEFAULT_TENANT
from service.signing import KeyRing, SigningKey
from service.tenants import TenantDirectory
from subscriber.wire import (
    MSG_ID_HEADER,
    POSITION_HEADER,
    Revocation,
    all_tenants,
    headers,
    sign,
    subject,
)
from workers.base.watch import Watched
from workers.relay import Backoff
from workers.revocation_log import Chain, ending_after, revocations

if TYPE_CHECKING:
    from service.settings import Settings

Q = load_queries("workers", "revocation_feed.sql")
LOCK = load_queries("workers", "relay.sql")  # lock, unlock, ping: the relay's singleton
log = structlog.get_logger("workers.revocation_feed")
Present = dict[int, tuple[str, int]]  # position -> (msg id, stream sequence)


class PublishIncomplete(Exception):
    """Part of a window was not acknowledged: rescan, then publish the rest."""


@dataclass(frozen=True)
class FeedConfig:
    stream: str = "AUTHLEDGER"
    subject_prefix: str = "authledger"
    issuer: str = "http://127.0.0.1:8000"  # the `iss` of every message
    checkpoint: str = ""  # default: revocations:<stream>
    batch: int = 256  # ending events per window
    duplicate_window: float = 120.0  # seconds; only used when the feed creates the stream
    ack_timeout: float = 5.0
    idle_timeout: float = 5.0  # bounds a lost NOTIFY; also how often the lock session is pinged
    settle: float = 0.05  # after a NOTIFY, wait this long (s): one look per burst
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    reconnect_wait: float = 0.5
    key_refresh: float = 30.0  # seconds between reloads of the key ring
    save_every: int = 10_000  # log positions passed with nothing to publish before saving

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError("batch must be at least 1")

    @property
    def checkpoint_name(self) -> str:
        return self.checkpoint or f"revocations:{self.stream}"


@dataclass
class FeedStats:
    position: int = 0  # C: every ending event up to here is published
    seq: int = 0  # S: every message of a later position lies above this stream sequence
    published: int = 0  # acked as new by JetStream
    skipped: int = 0  # found in the stream by a scan, not published again
    deduplicated: int = 0  # acked as duplicates by JetStream's dedupe window
    holding_lock: bool = False
    retries: int = 0  # failures retried (NATS, Postgres)
    scans: list[int] = field(default_factory=list)  # positions found above C per scan


class RevocationPublisher:
    """Publishes the revocation feed until cancelled; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        nats_url: str,
        keyring: KeyRing,
        config: FeedConfig | None = None,
        *,
        clock: Clock | None = None,
        tenants: TenantDirectory | None = None,
    ) -> None:
        self._pool = pool
        self._nats_url = nats_url
        self._keyring = keyring  # the default tenant's; other tenants' rings are made alike
        self._rings: dict[str, KeyRing] = {keyring.tenant_id: keyring}
        self._loaded: dict[str, float] = {}
        self._tenants = tenants  # other tenants' issuers; None: every message is the default's
        self._clock = clock or SystemClock()
        self.config = config or FeedConfig()
        self._watch = Watched(FeedStats())
        self.stats = self._watch.stats
        self._backoff = Backoff(self.config.backoff_initial, self.config.backoff_max)
        self._nats_errors = 0
        self._keys_loaded = -1e9
        self._saved = 0

    async def run(self) -> None:
        cfg = self.config
        log.info("revocation_feed.started", stream=cfg.stream, checkpoint=cfg.checkpoint_name)
        nc = NATS()
        try:
            await nc.connect(
                self._nats_url,
                name=f"authledger-{cfg.checkpoint_name}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=cfg.reconnect_wait,  # type: ignore[arg-type]
                error_cb=self._nats_error,
                reconnected_cb=self._nats_reconnected,
            )
            self._nats_errors = 0
            js = nc.jetstream(timeout=cfg.ack_timeout)
            while True:
                try:
                    await self._session(js)
                except Exception as exc:  # a Postgres blip, or anything else: start over
                    await self._pause("session", exc)
        finally:
            self.stats.holding_lock = False
            with contextlib.suppress(Exception):
                await nc.close()
            log.info("revocation_feed.stopped", position=self.stats.position)

    async def wait_for(self, predicate: Callable[[FeedStats], bool]) -> FeedStats:
        """Until `predicate(stats)` holds after a change (bound it with `asyncio.timeout`): for
        tests and tools, await a state instead of polling it."""
        return await self._watch.wait_for(predicate)

    async def _nats_error(self, exc: Exception) -> None:
        self._nats_errors += 1
        if self._nats_errors % 100 == 1:
            log.warning("revocation_feed.nats_error", error=repr(exc), errors=self._nats_errors)

    async def _nats_reconnected(self) -> None:
        log.info("revocation_feed.nats_reconnected", errors=self._nats_errors)
        self._nats_errors = 0

    async def _pause(self, stage: str, exc: BaseException) -> None:
        self.stats.retries += 1
        self._watch.changed()
        delay = self._backoff.next()
        log.warning("revocation_feed.retry", stage=stage, error=repr(exc), delay=round(delay, 3))
        await asyncio.sleep(delay)

    async def _session(self, js: JetStreamContext) -> None:
        """Hold the lock on one connection and publish until something fails."""
        name = self.config.checkpoint_name
        async with self._pool.acquire() as conn:
            try:
                await conn.execute(LOCK["lock"], name)
                self.stats.holding_lock = True
                self._watch.changed()
                log.info("revocation_feed.lock_acquired", checkpoint=name)
                async with Wakeups(self._pool) as wakeups:
                    await self._publish_all(js, conn, wakeups)
            finally:
                self.stats.holding_lock = False
                self._watch.changed()
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.execute(LOCK["unlock"], name)

    async def _publish_all(
        self, js: JetStreamContext, conn: PoolConnectionProxy[asyncpg.Record], wakeups: Wakeups
    ) -> None:
        row = await conn.fetchrow(Q["load_checkpoint"], self.config.checkpoint_name)
        assert row is not None  # noqa: S101 - the query always returns one row
        self.stats.position, self.stats.seq = int(row["position"]), int(row["seq"])
        self._saved = self.stats.position
        while True:
            try:
                present = await self._scan(js)
                await self._pump(js, conn, wakeups, present)
            except (nats.errors.Error, TimeoutError, PublishIncomplete) as exc:
                await self._pause("nats", exc)

    async def _pump(
        self,
        js: JetStreamContext,
        conn: PoolConnectionProxy[asyncpg.Record],
        wakeups: Wakeups,
        present: Present,
    ) -> None:
        cfg, stats, chain = self.config, self.stats, Chain()
        while True:
            wakeups.clear()
            async with self._pool.acquire() as reader:
                window = await ending_after(reader, stats.position, cfg.batch)
            if not window.events:
                stats.position = max(stats.position, window.head)
                self._watch.changed()
                if stats.position - self._saved >= cfg.save_every:
                    await self._save(conn, stats.position, stats.seq)
                if not await wakeups.wait(cfg.idle_timeout, settle=cfg.settle):
                    if stats.position != self._saved:
                        await self._save(conn, stats.position, stats.seq)
                    await conn.fetchval(LOCK["ping"])  # fails fast if the lock's session died
                continue
            async with self._pool.acquire() as reader:
                messages = await revocations(
                    reader, window.events, chain, issuer=await self._issuers(window.events),
                    now=self._clock.now(),
                )  # fmt: skip
            keys = {t: await self._key(t) for t in {m.tenant for m in messages}}
            done, seqs = await self._publish(js, messages, keys, present)
            if done:
                through = window.through if done == len(messages) else messages[done - 1].position
                for position in [p for p in present if p <= through]:
                    del present[position]
                beyond = [seq for _, seq in present.values()]
                seq = max([stats.seq, *seqs])
                if beyond:
                    seq = min(seq, min(beyond) - 1)
                await self._save(conn, through, seq)
                self._backoff.reset()
                log.info("revocation_feed.published", count=done, position=through, seq=seq)
            if done < len(messages):
                raise PublishIncomplete(f"{len(messages) - done} of {len(messages)} not acked")

    async def _save(
        self, conn: PoolConnectionProxy[asyncpg.Record], position: int, seq: int
    ) -> None:
        await conn.execute(Q["save_checkpoint"], self.config.checkpoint_name, position, seq)
        self.stats.position, self.stats.seq, self._saved = position, seq, position
        self._watch.changed()

    async def _issuers(self, events: Sequence[RecordedEvent]) -> Callable[[str], str]:
        """The `iss` of each tenant's messages: its own issuer (the default's for a tenant
        this worker cannot find, e.g. one removed since)."""
        default = self.config.issuer
        if self._tenants is None:
            return lambda _: default
        tenants = self._tenants
        if any(tenants.get(e.tenant_id) is None for e in events):
            await tenants.load(self._pool)  # created since we last looked

        def issuer(tenant_id: str) -> str:
            config = tenants.get(tenant_id)
            return default if config is None or tenant_id == DEFAULT_TENANT else config.issuer

        return issuer

    async def _key(self, tenant_id: str) -> SigningKey:
        """The tenant's active signing key (the default tenant's for all when this publisher
        was given no tenant directory), its ring reloaded every `key_refresh` seconds."""
        if self._tenants is None:
            tenant_id = self._keyring.tenant_id
        ring = self._rings.get(tenant_id)
        if ring is None:
            ring = self._rings[tenant_id] = KeyRing(self._keyring.secret_key, tenant_id)
        if time.monotonic() - self._loaded.get(tenant_id, -1e9) >= self.config.key_refresh:
            await ring.load(self._pool)
            self._loaded[tenant_id] = time.monotonic()
        key = ring.active
        if key is None:
            key = await ring.ensure_active(self._pool, self._clock.now())
        return key

    async def _publish(
        self,
        js: JetStreamContext,
        messages: list[Revocation],
        keys: dict[str, SigningKey],
        present: Present,
    ) -> tuple[int, list[int]]:
        """Publish the window in order; return how many leading messages are now stored, and
        the stream sequences of those."""
        cfg = self.config
        pending: list[tuple[int, asyncio.Future[PubAck]]] = []
        stored: dict[int, int] = {}  # index -> seq, for the messages a scan found
        try:
            for index, claims in enumerate(messages):
                found = present.get(claims.position)
                if found is not None and found[0] == claims.msg_id:
                    stored[index] = found[1]
                    continue
                future = await js.publish_async(
                    subject(cfg.subject_prefix, claims.tenant),
                    sign(claims, keys[claims.tenant].private_key, keys[claims.tenant].kid).encode(),
                    headers=headers(claims),
                    stream=cfg.stream,
                )
                pending.append((index, future))
            if pending:
                await asyncio.wait([f for _, f in pending], timeout=cfg.ack_timeout)
        finally:
            for _, future in pending:
                if not future.done():
                    future.cancel()  # frees its slot in nats-py's pending-ack table
                elif not future.cancelled():
                    future.exception()  # retrieved: never "exception was never retrieved"
        done, failure = len(messages), None
        for index, future in pending:
            if future.cancelled() or future.exception() is not None:
                done, failure = index, future
                break
        acks = [future.result() for index, future in pending if index < done]
        duplicates = sum(1 for ack in acks if ack.duplicate)
        self.stats.published += len(acks) - duplicates
        self.stats.deduplicated += duplicates
        self.stats.skipped += sum(1 for index in stored if index < done)
        self._watch.changed()
        if failure is not None:
            error = "ack timeout" if failure.cancelled() else repr(failure.exception())
            log.warning("revocation_feed.not_acked", position=messages[done].position, error=error)
        seqs = [ack.seq for ack in acks] + [seq for index, seq in stored.items() if index < done]
        return done, seqs

    async def _stream(self, js: JetStreamContext) -> StreamInfo:
        """The stream's info, creating the stream (as the relay would) when it is missing."""
        cfg = self.config
        with contextlib.suppress(NotFoundError):
            info = await js.stream_info(cfg.stream)
            if not any(
                covers(s, subject(cfg.subject_prefix, "t")) for s in info.config.subjects or []
            ):
                log.error("revocation_feed.subject_not_in_stream", stream=cfg.stream,
                          subjects=info.config.subjects)  # fmt: skip
            return info
        config = StreamConfig(
            name=cfg.stream,
            subjects=[f"{cfg.subject_prefix}.>"],
            storage=StorageType.FILE,
            duplicate_window=cfg.duplicate_window,
        )
        try:
            info = await js.add_stream(config)
        except BadRequestError:  # created meanwhile by someone else (the relay)
            return await js.stream_info(cfg.stream)
        log.info("revocation_feed.stream_created", stream=cfg.stream, subjects=config.subjects)
        return info

    async def _scan(self, js: JetStreamContext) -> Present:
        """The revocation messages above S of positions above C, by position."""
        cfg, stats = self.config, self.stats
        state = (await self._stream(js)).state
        if state.last_seq < stats.seq:  # the stream was made anew: its sequences restarted
            log.warning("revocation_feed.stream_reset", seq=stats.seq, last_seq=state.last_seq)
            stats.seq = 0
        present: Present = {}
        seq, scanned = stats.seq + 1, 0
        while True:
            try:
                msg = await js.get_msg(
                    cfg.stream, seq=seq, subject=all_tenants(cfg.subject_prefix), next=True
                )
            except NotFoundError:
                break
            scanned += 1
            found_seq = msg.seq or seq
            seq = found_seq + 1
            found: dict[str, Any] = msg.headers or {}
            position, msg_id = str(found.get(POSITION_HEADER, "")), found.get(MSG_ID_HEADER)
            if position.isdigit() and int(position) > stats.position and msg_id:
                present.setdefault(int(position), (str(msg_id), found_seq))
        stats.scans.append(len(present))
        self._watch.changed()
        log.info("revocation_feed.scanned", position=stats.position, seq=stats.seq,
                 scanned=scanned, present=len(present))  # fmt: skip
        return present


def covers(pattern: str, name: str) -> bool:
    """Whether NATS subject `pattern` (with `*` and `>`) matches subject `name`."""
    want, have = pattern.split("."), name.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return len(have) > index
        if index >= len(have) or part not in ("*", have[index]):
            return False
    return len(want) == len(have)


def revocation_feed_worker(settings: Settings, pool: asyncpg.Pool) -> Coroutine[Any, Any, None]:
    """The publisher as `workers.runner` runs it; needs AUTHLEDGER_SECRET_KEY (it signs)."""
    from service.settings import ConfigError
    from service.tenant import TenantConfig

    if not settings.secret_key:
        raise ConfigError("AUTHLEDGER_SECRET_KEY: required by the revocation feed (it signs)")
    config = FeedConfig(
        stream=settings.nats_stream,
        subject_prefix=settings.nats_subject_prefix,
        issuer=TenantConfig.from_settings(settings).issuer,
    )
    ring, tenants = KeyRing(settings.secret_key), TenantDirectory(settings)
    return RevocationPublisher(pool, settings.nats_url, ring, config, tenants=tenants).run()
