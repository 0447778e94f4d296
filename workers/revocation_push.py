"""Revocation push: every credential revocation and expiry, to every webhook subscriber, as a
signed Security Event Token (RFC 8417) POSTed per RFC 8935, in log order, with retries.

The queue: a subscriber's queue is the log itself. Its subscription row holds a cursor (a log
position); the next event to send is the first `credential.revoked` / `credential.expired`
after the cursor that its filters want (`push_next_position`, migration 0008). The worker
sends that one and nothing else until it is delivered: `push.delivered` moves the cursor in
the same transaction that records it (the inline projection), so delivery and cursor never
disagree, and a failing head holds back its own subscriber only ("later events held behind
it"); the others go on.

One try, one event: every try is recorded on the subscription's stream as `push.delivered`
or `push.delivery_failed` (status or error, duration, next try), decided by
`service.domain.subscriptions.decide_delivery`: retries with exponential back-off and full
jitter until the `RetryPolicy` budget (tries, or a day since the first failure) runs out or
the receiver rejects the SET for good (RFC 8935 400, 401/403, …); then `push.dead_lettered`
and the subscription stops at that event (status `dead_letter`, shown by the admin API)
until an operator asks for a replay (`push.replay_requested` moves the cursor and makes it
active again). The next try's time is in the event, so retries survive a restart.

Several workers: a round claims due subscriptions by taking a lease on each (`push_leases`,
an upsert that only takes free or lapsed leases, renewed before every try), so one worker
at a time sends to a subscriber and the order holds. Exactly-once recording does not rest on
the lease: each outcome is appended at the subscription's stream version the decision was
made on, so a worker whose lease lapsed mid-send (or that raced an operator's replay or
removal) gets ConcurrencyConflict, records nothing and stops. Delivery is therefore at least
once: that send, or one cut short by a crash before its event was appended, is sent again
with the same `jti` (receivers dedupe by `jti`, RFC 8935 §2.2).

Waking: LISTEN `authledger_events` (any append may be a revocation, a new subscription or a
replay); otherwise the worker sleeps until the next due try or lease end on the injectable
clock (a ManualClock wakes it when a test moves it), at most `idle_timeout` real seconds.

Where it sends: the client (`webhook_client`) connects only to public addresses, or to those
`outbound_allow` (AUTHLEDGER_OUTBOUND_ALLOW) admits, checked on the resolved address at
connect time; a refused connection is a failed try like any other (security finding 7).

Secrets: the subscriber's bearer secret is opened in memory just before the POST; neither
it nor the SET is ever logged or recorded (logs name the subscription, position, attempt,
status and a short error).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import structlog

from events.catalogue import Event
from events.clock import Clock, SystemClock
from events.envelope import Metadata, StreamRef
from events.errors import ConcurrencyConflict
from events.ids import random_token
from events.ledger import LEDGER
from events.sql import load_queries
from events.store import EventStore, row_to_event
from events.subscription import STREAM_TYPE, PushDeadLettered, PushDelivered, PushDeliveryFailed
from projections.runner import project
from service.backoff import Backoff
from service.commands.subscriptions import state_of
from service.crypto.secret_keys import ServerKeys, load_server_keys
from service.crypto.signing import KeyRing, SigningKey
from service.domain.subscriptions import (
    Head,
    NotActive,
    Outcome,
    RetryPolicy,
    decide_delivery,
)
from service.push.delivery import post_set, webhook_client
from service.push.secrets import SecretUnreadable, open_secret
from service.push.sets import CredentialEnded, credential_ended, set_claims, sign_set
from service.settings import ConfigError
from service.tenancy.config import TenantConfig
from service.tenancy.directory import TenantDirectory
from workers.base.sleeper import Listening, Sleeper
from workers.base.supervise import supervise
from workers.base.watch import Watched

if TYPE_CHECKING:
    from service.settings import Settings

ACTOR = "worker:revocation_push"
Q = load_queries("workers", "revocation_push.sql")
QS = load_queries("projections", "subscriptions.sql")
log = structlog.get_logger("workers.revocation_push")
_random = secrets.SystemRandom()


@dataclass(frozen=True)
class PushConfig:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 10.0  # one POST: connect, send, answer
    lease: float = 60.0  # a claimed subscription is left alone this long; renewed per try
    batch: int = 16  # subscriptions claimed (and served concurrently) per round
    per_turn: int = 100  # deliveries to one subscription before its lease is given back
    idle_timeout: float = 30.0  # longest sleep: bounds a NOTIFY lost while reconnecting
    settle: float = 0.02  # after a NOTIFY, wait this long (s): one look per burst
    restart_max: float = 30.0  # back-off cap when the database is unreachable
    keys_refresh: float = 60.0  # seconds between reloads of the signing keys (rotations)

    def __post_init__(self) -> None:
        if self.batch < 1 or self.per_turn < 1 or self.lease <= self.timeout:
            raise ValueError("needs batch >= 1, per_turn >= 1 and lease > timeout")


@dataclass
class PushStats:
    attempts: int = 0  # tries recorded by this worker
    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    conflicts: int = 0  # outcomes not recorded: the subscription moved meanwhile
    sleeping: bool = False
    asleep_until: datetime | None = None  # None while sleeping: until woken


class PushWorker:
    """Pushes revocations to webhook subscribers; see the module docstring. `run()` until
    cancelled, or `run_once()` to send what is due now and return."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        secret_key: str,
        tenant: TenantConfig,
        keys: ServerKeys | None = None,  # loaded, for subscribers' secrets; None: derived
        store: EventStore | None = None,
        clock: Clock | None = None,
        config: PushConfig | None = None,
        client: httpx.AsyncClient | None = None,
        jitter: Callable[[], float] | None = None,
        outbound_allow: tuple[str, ...] = (),
    ) -> None:
        self._pool = pool
        self._secret_key = secret_key
        self._keys = keys or ServerKeys(secret_key)
        self._tenant = tenant
        self._owns_store = store is None
        self._store = store or EventStore(pool)
        self._clock = clock or SystemClock()
        self.config = config or PushConfig()
        self._owns_client = client is None
        self._client = client or webhook_client(outbound_allow)
        self._jitter = jitter or _random.random
        self._ring = KeyRing(secret_key, tenant.tenant_id)  # the tenant's own signing keys
        self._keys_loaded = float("-inf")
        self.holder = random_token("push_", 9)
        self._watch = Watched(PushStats())
        self.stats = self._watch.stats
        self._restart = Backoff(0.1, self.config.restart_max)
        self._sleeper = Sleeper(self._clock, self._watch, settle=self.config.settle)

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Push until cancelled; database outages restart the loop after a pause, and anything
        else ends it (a bug, for the runner to report)."""
        log.info("push.started", holder=self.holder)
        try:
            await supervise("push", self._session, self._restart)
        finally:
            self.stats.sleeping, self.stats.asleep_until = False, None
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self._pool.execute(Q["release_held"], self.holder)
            await self.close()
            log.info("push.stopped", attempts=self.stats.attempts)

    async def run_once(self) -> int:
        """Send what is due now, until nothing more is; returns how many tries were made."""
        made = 0
        while tried := await self._round():
            made += tried
        return made

    async def close(self) -> None:
        if self._owns_store:
            await self._store.close()
        if self._owns_client:
            await self._client.aclose()

    async def wait_for(self, predicate: Callable[[PushStats], bool]) -> PushStats:
        """Until `predicate(stats)` holds after a try or on falling asleep (bound it with
        `asyncio.timeout`): for tests and tools, await a state instead of polling it."""
        return await self._watch.wait_for(predicate)

    # -- the loop ----------------------------------------------------------------------------

    async def _session(self) -> None:
        async with Listening(self._pool) as wakeups:
            while True:
                wakeups.clear()  # before looking: an append from now on wakes us
                if await self._round():
                    self._restart.reset()
                    continue  # tries were made: more may be due
                self._restart.reset()
                now = self._clock.now()
                due: datetime | None = await self._pool.fetchval(
                    Q["next_due"], self._tenant.tenant_id, now
                )
                await self._sleeper.sleep(wakeups, due, self.config.idle_timeout)
                if wakeups.lost:
                    raise ConnectionError("the LISTEN connection was lost")

    # -- rounds ------------------------------------------------------------------------------

    async def _round(self) -> int:
        """Claim due subscriptions and serve each; returns how many tries were made."""
        now = self._clock.now()
        lease_end = now + timedelta(seconds=self.config.lease)
        rows = await self._pool.fetch(
            Q["claim"], self._tenant.tenant_id, now, self.holder, lease_end, self.config.batch
        )
        served = await asyncio.gather(
            *(self._serve(row["subscription_id"]) for row in rows), return_exceptions=True
        )
        tries = 0
        for result in served:
            if isinstance(result, BaseException):
                raise result
            tries += result
        return tries

    async def _serve(self, subscription_id: str) -> int:
        """Send this subscription's due events in order, while they are accepted; then give
        the lease back. Returns how many tries were made."""
        tries = 0
        try:
            for _ in range(self.config.per_turn):
                now = self._clock.now()
                row = await self._pool.fetchrow(QS["one"], self._tenant.tenant_id, subscription_id)
                if row is None or row["status"] != "active" or row["next_position"] is None:
                    break
                if row["next_attempt_at"] is not None and row["next_attempt_at"] > now:
                    break
                if not await self._renew(subscription_id, now):
                    break  # the lease lapsed and another worker took it
                found = await self._pool.fetchrow(Q["event_at"], row["next_position"])
                if found is None:  # positions are never deleted; unreachable
                    break
                ended = credential_ended(row_to_event(found), found["kind"], found["token_hash"])
                outcome = await self._send(row, ended)
                tries += 1
                if not await self._record(row, ended, outcome) or not outcome.delivered:
                    break
        finally:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self._pool.execute(Q["release"], subscription_id, self.holder)
        return tries

    async def _renew(self, subscription_id: str, now: datetime) -> bool:
        lease_end = now + timedelta(seconds=self.config.lease)
        held = await self._pool.fetchval(Q["renew"], subscription_id, self.holder, lease_end)
        return held is not None

    async def _send(self, row: asyncpg.Record, ended: CredentialEnded) -> Outcome:
        subscription_id: str = row["subscription_id"]
        try:
            secret = (
                open_secret(self._keys, subscription_id, row["secret_sealed"])
                if row["secret_sealed"] is not None
                else None
            )
        except SecretUnreadable:
            return Outcome(None, "the stored secret does not open", permanent=True)
        key = await self._signing_key()
        claims = set_claims(
            ended,
            issuer=self._tenant.issuer,
            audience=row["audience"],
            subscription_id=subscription_id,
            now=self._clock.now(),
        )
        token = sign_set(claims, key)
        return await post_set(
            self._client, row["url"], token, secret=secret, deadline=self.config.timeout
        )

    async def _record(self, row: asyncpg.Record, ended: CredentialEnded, outcome: Outcome) -> bool:
        """Append the try's events at the version it was decided on; False when the
        subscription moved meanwhile (nothing recorded) or is no longer active."""
        state = state_of(row)
        now = self._clock.now()
        try:
            events = decide_delivery(
                state, Head(ended.position, ended.event_id), outcome,
                now=now, policy=self.config.policy, jitter=self._jitter(),
            )  # fmt: skip
        except NotActive:
            return False
        metadata = Metadata(actor=ACTOR, causation_id=str(ended.event_id))
        stream = StreamRef(self._tenant.tenant_id, STREAM_TYPE, state.subscription_id)
        new = [LEDGER.new(e, occurred_at=now, metadata=metadata) for e in events]
        try:
            await self._store.append(stream, state.version, new, projector=project)
        except ConcurrencyConflict:
            self.stats.conflicts += 1
            log.info("push.outcome_dropped", subscription_id=state.subscription_id,
                     position=ended.position, reason="the subscription moved")  # fmt: skip
            self._watch.changed()
            return False
        self._count(state.subscription_id, ended, events)
        self._watch.changed()
        return True

    def _count(self, subscription_id: str, ended: CredentialEnded, events: list[Event]) -> None:
        self.stats.attempts += 1
        where = {"subscription_id": subscription_id, "position": ended.position}
        for event in events:
            match event:
                case PushDelivered():
                    self.stats.delivered += 1
                    log.info("push.delivered", **where, attempt=event.attempt,
                             status=event.status)  # fmt: skip
                case PushDeliveryFailed():
                    self.stats.failed += 1
                    log.info("push.failed", **where, attempt=event.attempt, status=event.status,
                             error=event.error, retry_at=event.retry_at)  # fmt: skip
                case PushDeadLettered():
                    self.stats.dead_lettered += 1
                    log.warning("push.dead_lettered", **where, attempts=event.attempts,
                                cause=event.cause, error=event.error)  # fmt: skip

    async def _signing_key(self) -> SigningKey:
        """The active signing key, reloaded every `keys_refresh` seconds (rotations by other
        processes) and created if the deployment has none yet."""
        fresh = time.monotonic() - self._keys_loaded < self.config.keys_refresh
        if not fresh or self._ring.active is None:
            await self._ring.load(self._pool)
            self._keys_loaded = time.monotonic()
        key = self._ring.active
        if key is None:
            key = await self._ring.ensure_active(self._pool, self._clock.now())
        return key


def revocation_push_worker(settings: Settings, pool: asyncpg.Pool) -> Coroutine[Any, Any, None]:
    """The push worker as `workers.runner` runs it; needs AUTHLEDGER_SECRET_KEY (to sign SETs
    and open subscribers' secrets)."""
    if not settings.secret_key:
        raise ConfigError("AUTHLEDGER_SECRET_KEY: required by the revocation push worker")
    secret_key = settings.secret_key

    async def run() -> None:  # built when it starts: nothing to close if it never does
        # One worker per tenant known at start (its issuer and keys sign its SETs); a tenant
        # created later is served after the next restart of the workers.
        directory = TenantDirectory(settings)
        await directory.load(pool)
        keys = await load_server_keys(pool, secret_key)
        async with asyncio.TaskGroup() as group:
            for tenant in directory.configs():
                worker = PushWorker(pool, secret_key=secret_key, tenant=tenant, keys=keys,
                                    outbound_allow=settings.outbound_allow)  # fmt: skip
                group.create_task(worker.run())

    return run()
