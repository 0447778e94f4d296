"""The expiry worker: records every deadline that passes (spec §4, §6.1 R7, §6.2).

What it records is decided by `service.domain.expiry`: `registration.expired` (ttl) for an
open registration past its TTL, with `credential.revoked` (`registration_expired`) of the
pre-claim key it held, in one append; `claim.attempt_expired` when a live attempt's link
window ends; `credential.expired` when an active credential's own `expires_at` passes. A v0.6
registration's pre-claim access tokens end with it as v1's key does, in the same append (one
item: workers/expiry_states.py). Each
event's occurred-at is its deadline; its recorded-at says when the worker got to it. Nothing
waits for the worker: every check compares the deadline with the clock itself, so a stopped
worker delays the facts in the log (and what the relay tells subscribers), never a refusal.

Finding work: the deadlines come from the projections, through partial indexes holding only
what is pending (migrations 0005 and 0007): open registrations' `expires_at`, live attempts'
`link_expires_at`, active credentials' `expires_at`. A round takes what is due, oldest first,
a batch per source; reads the streams concerned in one query; decides; and appends every
item at the stream versions it decided on, concurrently, so the store commits them in a few
group commits, projecting inline. After downtime the first rounds catch up on every deadline
missed, oldest first.

Several workers at once: a round runs in a transaction that claims its items with
transaction-level advisory locks (keyed by registration, else credential), skipping those
another worker holds, so workers share the work. Exactly-once does not rest on that: every
append names the versions its decision was made on, so a second append for the same item
fails with ConcurrencyConflict; the worker then reads the streams again and finds nothing
left to do.

Sleeping: the next deadline is one query (`projections.deadlines`: the oldest of the three
indexes). The worker sleeps until then on the injectable clock (workers/base/sleeper.py: a
ManualClock wakes it when a test moves it), and is woken early by LISTEN `authledger_events`,
because any append may have written a nearer deadline. `idle_timeout` bounds a notification
lost while reconnecting.

Lag: now minus the oldest deadline not yet recorded (0 when none), in `stats.lag_seconds`
after every look and from `lag()` on demand; logged with each round that records, and as a
warning past `lag_warning`. Database outages restart the loop with capped, jittered back-off
(workers/base); anything else ends it, for the runner to report.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import structlog

from events.clock import Clock, SystemClock
from events.credential import STREAM_TYPE as CREDENTIAL
from events.envelope import Metadata, StreamRef
from events.errors import ConcurrencyConflict
from events.ledger import LEDGER
from events.registration import STREAM_TYPE as REGISTRATION
from events.sql import Conn, load_queries
from events.store import EventStore, StreamAppend
from projections.deadlines import next_deadline
from projections.runner import project
from service.backoff import Backoff
from service.domain.expiry import Dated, decide_expiry
from workers.base.sleeper import Listening, Sleeper
from workers.base.supervise import supervise
from workers.base.watch import Watched
from workers.expiry_states import Case, State, case_of, no_token_unseen, read_states

if TYPE_CHECKING:
    from service.settings import Settings

ACTOR = "worker:expiry"
LOCK_CLASS = 0x6578_7079  # "expy": the advisory-lock class of the items a round claims
METADATA = Metadata(actor=ACTOR)
Q = load_queries("workers", "expiry.sql")
log = structlog.get_logger("workers.expiry")


@dataclass(frozen=True)
class ExpiryConfig:
    batch: int = 500  # items taken per source per round
    idle_timeout: float = 60.0  # longest sleep (s): bounds a NOTIFY lost while reconnecting
    settle: float = 0.05  # after a NOTIFY, wait this long (s): one look per burst
    retries: int = 5  # decisions per item when its streams move meanwhile
    pause_initial: float = 0.05  # due items held by another worker: look again after this
    pause_max: float = 5.0
    restart_max: float = 30.0  # back-off cap when the database is unreachable
    lag_warning: float = 5.0  # seconds of lag that make a round log a warning
    skip_locked: bool = True  # claim items, so workers share them; False: versions alone

    def __post_init__(self) -> None:
        if self.batch < 1 or self.retries < 1 or self.idle_timeout <= 0:
            raise ValueError("needs batch >= 1, retries >= 1 and idle_timeout > 0")


@dataclass
class ExpiryStats:
    rounds: int = 0  # catch-ups that recorded something
    recorded: Counter[str] = field(default_factory=Counter)  # events this worker appended
    conflicts: int = 0  # appends refused because a stream moved (another writer was first)
    lag_seconds: float = 0.0  # now - oldest unrecorded deadline, at the last look
    next_deadline: datetime | None = None  # the oldest unrecorded deadline at the last look
    sleeping: bool = False
    asleep_until: datetime | None = None  # None while sleeping: until woken


class ExpiryWorker:
    """Records deadlines as they pass; see the module docstring. `run()` until cancelled, or
    `run_once()` / `catch_up()` to record what is due now and return."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        store: EventStore | None = None,
        clock: Clock | None = None,
        config: ExpiryConfig | None = None,
    ) -> None:
        self._pool = pool
        self._owns_store = store is None
        self._store = store or EventStore(pool)
        self._clock = clock or SystemClock()
        self.config = config or ExpiryConfig()
        self._watch = Watched(ExpiryStats())
        self.stats = self._watch.stats
        self._pause = Backoff(self.config.pause_initial, self.config.pause_max)
        self._restart = Backoff(0.1, self.config.restart_max)
        self._sleeper = Sleeper(self._clock, self._watch, settle=self.config.settle)

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Record deadlines as they pass until cancelled; outages restart after a pause, and
        anything else ends it (a bug, for the runner to report)."""
        log.info("expiry.started", batch=self.config.batch)
        try:
            await supervise("expiry", self._session, self._restart)
        finally:
            self.stats.sleeping, self.stats.asleep_until = False, None
            await self.close()
            log.info("expiry.stopped", recorded=sum(self.stats.recorded.values()))

    async def run_once(self, now: datetime | None = None) -> int:
        """Record everything due at `now` (default: the clock's), oldest first; returns how
        many events this call appended."""
        at = now or self._clock.now()
        async with self._pool.acquire() as conn:
            self._observe(at, await next_deadline(conn))
            recorded, _ = await self._catch_up(conn, at)
            self._observe(at, await next_deadline(conn))
        return recorded

    async def catch_up(self) -> int:
        """`run_once` at the clock's now: every deadline missed while no worker ran."""
        return await self.run_once()

    async def close(self) -> None:
        """Flush the appends under way (of the store this worker opened, if it did)."""
        if self._owns_store:
            await self._store.close()

    async def lag(self, now: datetime | None = None) -> timedelta:
        """Now minus the oldest deadline not yet recorded; zero when none is overdue."""
        async with self._pool.acquire() as conn:
            deadline = await next_deadline(conn)
        at = now or self._clock.now()
        return max(at - deadline, timedelta(0)) if deadline is not None else timedelta(0)

    async def wait_for(self, predicate: Callable[[ExpiryStats], bool]) -> ExpiryStats:
        """Until `predicate(stats)` holds after a look, a round or on falling asleep (bound
        it with `asyncio.timeout`). For tests and tools: await a state, never poll it."""
        return await self._watch.wait_for(predicate)

    # -- the loop ----------------------------------------------------------------------------

    async def _session(self) -> None:
        """Look, record, sleep until the next deadline or an append; until something fails."""
        async with Listening(self._pool) as wakeups:
            while True:
                wakeups.clear()  # before looking: an append from now on wakes us
                async with self._pool.acquire() as conn:
                    now = self._clock.now()
                    deadline: datetime | None = await next_deadline(conn)
                    self._observe(now, deadline)
                    self._restart.reset()
                    due = deadline is not None and deadline <= now
                    settled = due and (await self._catch_up(conn, now))[1] > 0
                if not due:
                    self._pause.reset()
                    await self._sleeper.sleep(wakeups, deadline, self.config.idle_timeout)
                elif not settled:
                    # due, yet nothing settled: held by another worker (its appends will
                    # wake us), or refused again and again; look again after a pause
                    await self._sleeper.sleep(wakeups, None, self._pause.next())
                if wakeups.lost:
                    raise ConnectionError("the LISTEN connection was lost")

    def _observe(self, now: datetime, deadline: datetime | None) -> None:
        lag = max((now - deadline).total_seconds(), 0.0) if deadline is not None else 0.0
        self.stats.next_deadline, self.stats.lag_seconds = deadline, lag
        self._watch.changed()

    # -- rounds ------------------------------------------------------------------------------

    async def _catch_up(self, conn: Conn, now: datetime) -> tuple[int, int]:
        """Rounds until nothing more is due at `now`; returns (events appended, items
        settled). An item met twice in one catch-up waits for the next one."""
        recorded = settled = 0
        seen: set[Case] = set()
        while True:
            appended, done, full = await self._round(conn, now, seen)
            recorded, settled = recorded + appended, settled + done
            if not full or not done:
                break
        if recorded:  # the lag this catch-up worked off: now - oldest deadline, when it began
            self.stats.rounds += 1
            lag = round(self.stats.lag_seconds, 3)
            log.info("expiry.recorded", events=recorded, items=settled, lag=lag)
            if lag > self.config.lag_warning:
                log.warning("expiry.lagging", lag=lag, threshold=self.config.lag_warning)
        self._watch.changed()
        return recorded, settled

    async def _round(self, conn: Conn, now: datetime, seen: set[Case]) -> tuple[int, int, bool]:
        """One batch: claim, read, decide, append. Returns (events appended, items settled,
        whether a source filled its batch)."""
        cfg = self.config
        async with conn.transaction():  # holds the claims until every append is done
            rows = await conn.fetch(Q["due"], now, cfg.batch, LOCK_CLASS, cfg.skip_locked)
            cases = [c for c in dict.fromkeys(case_of(r) for r in rows) if c not in seen]
            seen.update(cases)
            if not cases:
                return 0, 0, False
            states = await read_states(conn, cases)
            outcomes = await asyncio.gather(
                *(self._settle(case, states[case], now) for case in cases),
                return_exceptions=True,
            )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        results = cast(list[tuple[int, bool]], outcomes)
        full = max(Counter(r["source"] for r in rows).values()) >= cfg.batch
        return sum(n for n, _ in results), sum(1 for _, ok in results if ok), full

    async def _settle(self, case: Case, state: State, now: datetime) -> tuple[int, bool]:
        """Decide and append, again on fresh state when a stream moved. Returns (events
        appended, whether the item is settled)."""
        registration, credential, tokens = state
        for _ in range(self.config.retries):
            decision = decide_expiry(registration, credential, now, tokens)
            if decision.empty:
                return 0, True
            parts = []
            if decision.registration and registration is not None:
                ref = StreamRef(case.tenant_id, REGISTRATION, registration.registration_id)
                parts.append(_part(ref, registration.version, decision.registration))
            if decision.credential and credential is not None:
                ref = StreamRef(case.tenant_id, CREDENTIAL, credential.credential_id)
                parts.append(_part(ref, credential.version, decision.credential))
            versions = {token.credential_id: token.version for token in tokens}
            for credential_id, dated in decision.tokens:
                ref = StreamRef(case.tenant_id, CREDENTIAL, credential_id)
                parts.append(_part(ref, versions[credential_id], dated))
            also = no_token_unseen(case, state) if decision.registration else None
            try:
                recorded = await self._store.append_many(parts, projector=project, also=also)
            except ConcurrencyConflict:
                self.stats.conflicts += 1
                state = (await read_states(self._pool, [case]))[case]
                registration, credential, tokens = state
                continue
            self.stats.recorded.update(r.type for r in recorded)
            return len(recorded), True
        log.warning(
            "expiry.item_deferred",
            registration_id=case.registration_id,
            credential_id=case.credential_id,
            tries=self.config.retries,
        )
        return 0, False


def _part(stream: StreamRef, version: int, dated: Sequence[Dated]) -> StreamAppend:
    events = [LEDGER.new(d.event, occurred_at=d.at, metadata=METADATA) for d in dated]
    return StreamAppend(stream, version, events)


def expiry_worker(_: Settings, pool: asyncpg.Pool) -> Coroutine[Any, Any, None]:
    """The expiry worker as `workers.runner` runs it: every tenant, the system clock."""
    return ExpiryWorker(pool).run()
