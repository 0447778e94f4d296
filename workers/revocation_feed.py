"""The revocation feed: every credential-ending event of the log to JetStream, as a signed
message on `<prefix>.<tenant>.revocations`, exactly once and in log order.

A worker of its own, beside the relay (which publishes every event as it is): it tails the log
(woken by LISTEN/NOTIFY) for `credential.revoked` and `credential.expired`, turns each into a
revocation message (`service/revocations/log.py`, format in `subscriber/wire.py`), signs it
with the service's active access-token key, publishes each window pipelined on one connection
(so the stream stores them in log order), waits for the acks, then writes its checkpoint.

Exactly once, without trusting JetStream's dedupe window:

- one publisher runs: it holds a session advisory lock named for its checkpoint
  (`revocations:<stream>`), on a connection that also writes the checkpoint, so a publisher
  whose session died cannot advance it (the relay's mechanism, `workers/base/lock.sql`);
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
live. The connection, the lock, the stream's set-up, pipelined publishes and retries are the
base's (workers/base/jetstream.py): NATS outages and Postgres blips are retried with capped,
jittered back-off, and anything else ends `run` (a bug, for the runner to report).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from events.clock import Clock, SystemClock
from events.envelope import RecordedEvent
from events.sql import load_queries
from events.store import Wakeups
from service.crypto.signing import KeyRing, SigningKey
from service.domain.tenants import DEFAULT_TENANT
from service.revocations.log import Chain, ending_after, revocations
from service.tenancy.directory import TenantDirectory
from subscriber.wire import (
    MSG_ID_HEADER,
    POSITION_HEADER,
    Revocation,
    all_tenants,
    headers,
    sign,
    subject,
)
from workers.base import jetstream
from workers.base.jetstream import LockConn

if TYPE_CHECKING:
    from service.settings import Settings

Q = load_queries("workers", "revocation_feed.sql")
Present = dict[int, tuple[str, int]]  # position -> (msg id, stream sequence)


@dataclass(frozen=True)
class FeedConfig(jetstream.PublisherConfig):
    issuer: str = "http://127.0.0.1:8000"  # the `iss` of every message
    batch: int = 256  # ending events per window
    settle: float = 0.05  # after a NOTIFY, wait this long (s): one look per burst
    key_refresh: float = 30.0  # seconds between reloads of the key ring
    save_every: int = 10_000  # log positions passed with nothing to publish before saving

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError("batch must be at least 1")

    @property
    def checkpoint_name(self) -> str:
        return self.checkpoint or f"revocations:{self.stream}"


@dataclass
class FeedStats(jetstream.PublisherStats):
    # position is C: every ending event up to here is published
    seq: int = 0  # S: every message of a later position lies above this stream sequence


class RevocationPublisher(jetstream.JetStreamPublisher[FeedConfig, FeedStats, Present]):
    """Publishes the revocation feed until cancelled; see the module docstring."""

    name = "revocation_feed"

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
        super().__init__(pool, nats_url, config or FeedConfig(), FeedStats())
        self._keyring = keyring  # the default tenant's; other tenants' rings are made alike
        self._rings: dict[str, KeyRing] = {keyring.tenant_id: keyring}
        self._loaded: dict[str, float] = {}
        self._tenants = tenants  # other tenants' issuers; None: every message is the default's
        self._clock = clock or SystemClock()
        self._saved = 0

    async def _load(self, conn: LockConn) -> None:
        row = await conn.fetchrow(Q["load_checkpoint"], self.config.checkpoint_name)
        assert row is not None  # noqa: S101 - the query always returns one row
        self.stats.position, self.stats.seq = int(row["position"]), int(row["seq"])
        self._saved = self.stats.position

    async def _pump(
        self, js: JetStreamContext, conn: LockConn, wakeups: Wakeups, present: Present
    ) -> None:
        cfg, stats, chain = self.config, self.stats, Chain()
        while True:
            wakeups.clear()
            async with self._pool.acquire() as reader:
                window = await ending_after(reader, stats.position, cfg.batch)
            if not window.events:
                stats.position = max(stats.position, window.head)
                self._changed()
                if stats.position - self._saved >= cfg.save_every:
                    await self._save(conn, stats.position, stats.seq)
                if not await wakeups.wait(cfg.idle_timeout, settle=cfg.settle):
                    if stats.position != self._saved:
                        await self._save(conn, stats.position, stats.seq)
                    await self._ping(conn)
                continue
            async with self._pool.acquire() as reader:
                messages = await revocations(
                    reader, window.events, chain, issuer=await self._issuers(window.events),
                    now=self._clock.now(),
                )  # fmt: skip
            keys = {t: await self._key(t) for t in {m.tenant for m in messages}}
            done, seqs = await self._publish_window(js, messages, keys, present)
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
                self._log.info("revocation_feed.published", count=done, position=through, seq=seq)
            if done < len(messages):
                raise jetstream.PublishIncomplete(
                    f"{len(messages) - done} of {len(messages)} not acked"
                )

    async def _save(self, conn: LockConn, position: int, seq: int) -> None:
        await conn.execute(Q["save_checkpoint"], self.config.checkpoint_name, position, seq)
        self.stats.position, self.stats.seq, self._saved = position, seq, position
        self._changed()

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

    async def _publish_window(
        self,
        js: JetStreamContext,
        messages: list[Revocation],
        keys: dict[str, SigningKey],
        present: Present,
    ) -> tuple[int, list[int]]:
        """Publish the window in order; return how many leading messages are now stored, and
        the stream sequences of those."""
        prefix = self.config.subject_prefix
        outgoing: list[jetstream.Outgoing | None] = []
        stored: dict[int, int] = {}  # index -> seq, for the messages a scan found
        for index, claims in enumerate(messages):
            found = present.get(claims.position)
            if found is not None and found[0] == claims.msg_id:
                stored[index] = found[1]
                outgoing.append(None)
                continue
            key = keys[claims.tenant]
            body = sign(claims, key.private_key, key.kid).encode()
            outgoing.append(
                jetstream.Outgoing(subject(prefix, claims.tenant), body, headers(claims))
            )
        acked = await self._publish(js, outgoing)
        if acked.failure is not None:
            position = messages[acked.done].position
            self._log.warning("revocation_feed.not_acked", position=position, error=acked.failure)
        seqs = [ack.seq for _, ack in acked.acks]
        seqs += [seq for index, seq in stored.items() if index < acked.done]
        return acked.done, seqs

    async def _scan(self, js: JetStreamContext) -> Present:
        """The revocation messages above S of positions above C, by position."""
        cfg, stats = self.config, self.stats
        info = await self._stream(js)
        if not any(covers(s, subject(cfg.subject_prefix, "t")) for s in info.config.subjects or []):
            self._log.error("revocation_feed.subject_not_in_stream", stream=cfg.stream,
                            subjects=info.config.subjects)  # fmt: skip
        state = info.state
        if state.last_seq < stats.seq:  # the stream was made anew: its sequences restarted
            self._log.warning("revocation_feed.stream_reset", seq=stats.seq,
                              last_seq=state.last_seq)  # fmt: skip
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
        self._scanned(len(present), position=stats.position, seq=stats.seq, scanned=scanned)
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
    from service.tenancy.config import TenantConfig

    if not settings.secret_key:
        raise ConfigError("AUTHLEDGER_SECRET_KEY: required by the revocation feed (it signs)")
    config = FeedConfig(
        stream=settings.nats_stream,
        subject_prefix=settings.nats_subject_prefix,
        issuer=TenantConfig.from_settings(settings).issuer,
    )
    ring, tenants = KeyRing(settings.secret_key), TenantDirectory(settings)
    return RevocationPublisher(pool, settings.nats_url, ring, config, tenants=tenants).run()
