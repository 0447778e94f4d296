"""Bearer credentials checked in memory, kept right by the event feed.

A credential is looked up by its SHA-256. A miss reads its `credentials` row (and registration
status) once, single-flight, and caches it; unknown hashes are cached briefly. A task tails the
log from the head it found (LISTEN/NOTIFY-woken) and applies `credential.*` and
`registration.claimed` events to cached entries, so a revocation appended by any process is
refused here as soon as the tail reads it. `expires_at <= now` is refused with no event.

Never staler than the log: entries serve only while the tail is live (a failed tail empties
the cache and restarts from the new head); an event applies only if newer than the entry's
stream version; an event read while a load is in flight is applied to what the load read.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

import asyncpg
import structlog

from events.catalogue import Event
from events.credential import CredentialIssued
from events.envelope import RecordedEvent
from events.ledger import LEDGER
from events.registration import RegistrationClaimed
from events.sessions import reset_if_marked
from events.sql import load_queries
from events.store import EventStore
from service.backoff import Backoff
from service.caches.principal import CachedCredential, Principal, apply, from_row
from service.crypto.tokens import token_hash

Q = load_queries("service.caches", "credentials.sql")
log = structlog.get_logger("service.caches.credentials")
Refusal = Literal["unknown", "revoked", "expired"]
WATCHED = frozenset(f"credential.{e}" for e in ("issued", "rescoped", "revoked", "expired")) | {
    "registration.claimed"
}


@dataclass(frozen=True, slots=True)
class _Change:
    seq: int
    key: str  # token hash (issued), registration id (claimed), else credential id
    version: int
    event: Event


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    negative_hits: int = 0
    loads: int = 0
    evictions: int = 0
    applied: int = 0  # events that changed a cached entry
    resets: int = 0


class CredentialCache:
    """Token hash → credential, LRU-bounded, following the log from where it found it.

    Give it the `feed` to tail, or a `feed_url` to open a small pool of its own for that on
    first use (LISTEN holds a connection for as long as the cache follows the log). The feed
    starts with `start`, or by itself on the first check.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        feed: EventStore | None = None,
        *,
        feed_url: str | None = None,
        max_entries: int = 100_000,
        negative_max: int = 10_000,
        negative_ttl: float = 5.0,
        idle_timeout: float = 1.0,
    ) -> None:
        if (feed is None) == (feed_url is None):
            raise ValueError("give the cache either a feed or a feed_url")
        self._pool, self._feed, self._feed_url = pool, feed, feed_url
        self._feed_pool: asyncpg.Pool | None = None
        self._max, self._negative_max, self._negative_ttl = max_entries, negative_max, negative_ttl
        self._idle_timeout = idle_timeout
        self._entries: OrderedDict[str, CachedCredential] = OrderedDict()
        self._by_credential: dict[str, str] = {}
        self._by_registration: dict[str, set[str]] = {}
        self._negative: OrderedDict[str, float] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[CachedCredential | None]] = {}
        self._loads: Counter[int] = Counter()  # start seq of each load in flight
        self._recent: deque[_Change] = deque()
        self._seq = self._overflow_seq = 0
        self._live, self._epoch = asyncio.Event(), 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.position = 0  # of the last event the feed read
        self.stats = CacheStats()
        # Others that follow the log through this feed, by event type: told of each event
        # the feed reads and each this process appends (the sealer forgets erased keys, the
        # tenant directory applies tenant changes).
        self.hooks: dict[str, list[Callable[[RecordedEvent], None]]] = {}

    @property
    def live(self) -> bool:
        return self._live.is_set()

    def __len__(self) -> int:
        return len(self._entries)

    async def start(self, *, wait: float = 2.0) -> None:
        """Start following the log; wait at most `wait` seconds for it to be live."""
        self._spawn()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):  # not wait_for: it may swallow a cancel (3.11)
                await self._live.wait()

    def follow(self) -> None:
        """Start following the log if not yet (without waiting for it to be live)."""
        self._spawn()

    def _spawn(self) -> None:
        if self._task is None and not self._closed:
            loop = asyncio.get_running_loop()  # in a context of its own, not a request's
            self._task = loop.create_task(
                self._follow(), name="credential-feed", context=contextvars.Context()
            )

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._feed_pool is not None:
            try:  # a tail cancelled while it took its LISTEN connection may never give it back
                async with asyncio.timeout(2):
                    await self._feed_pool.close()
            except TimeoutError:
                log.warning("credential_cache.feed_pool_terminated")
                self._feed_pool.terminate()

    async def check(self, token: str, now: datetime) -> Principal | None:
        """The principal of a live credential; None for unknown, revoked or expired."""
        found = await self.verdict(token, now)
        return found if isinstance(found, Principal) else None

    async def verdict(self, token: str, now: datetime) -> Principal | Refusal:
        """Like `check`, saying why a credential is refused."""
        self._spawn()
        digest = token_hash(token)
        entry = self._cached(digest)
        if entry is False:
            entry = await self._load(digest)
        if entry is None:
            return "unknown"
        if entry.status == "revoked":
            return "revoked"
        expires_at = entry.principal.expires_at
        if entry.status != "active" or (expires_at is not None and expires_at <= now):
            return "expired"
        return entry.principal

    # -- reading ---------------------------------------------------------------------------

    def _cached(self, digest: str) -> CachedCredential | Literal[False] | None:
        """The cached entry, None for a known-unknown hash, False on a miss."""
        if self._live.is_set():
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
                self.stats.hits += 1
                return entry
            until = self._negative.get(digest)
            if until is not None and until > time.monotonic():
                self.stats.negative_hits += 1
                return None
        self.stats.misses += 1
        return False

    async def _load(self, digest: str) -> CachedCredential | None:
        task = self._inflight.get(digest)
        if task is None:  # one query per hash however many requests miss at once
            task = asyncio.get_running_loop().create_task(self._fetch(digest))
            self._inflight[digest] = task
            task.add_done_callback(lambda t: self._loaded(digest, t))
        return await asyncio.shield(task)

    def _loaded(self, digest: str, task: asyncio.Task[CachedCredential | None]) -> None:
        self._inflight.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter was cancelled

    async def _fetch(self, digest: str, *, again: bool = True) -> CachedCredential | None:
        epoch, start = (self._epoch if self.live else -1), self._seq
        self._loads[start] += 1
        try:
            row = await self._pool.fetchrow(Q["principal_by_token"], digest)
        finally:
            self._loads[start] -= 1
            if not self._loads[start]:
                del self._loads[start]
        self.stats.loads += 1
        entry = from_row(digest, row) if row is not None else None
        late = [c for c in self._recent if c.seq > start]
        self._prune()
        if entry is not None:
            mine = (entry.principal.credential_id, entry.principal.registration_id)
            for change in (c for c in late if c.key in mine):
                apply(entry, change.event, change.version)
        elif again and any(c.key == digest for c in late):
            return await self._fetch(digest, again=False)  # issued while we read: read again
        if epoch == self._epoch and self.live and start >= self._overflow_seq:
            self._store(digest, entry)
        return entry

    def _store(self, digest: str, entry: CachedCredential | None) -> None:
        if entry is None:
            self._negative[digest] = time.monotonic() + self._negative_ttl
            self._negative.move_to_end(digest)
            while len(self._negative) > self._negative_max:
                self._negative.popitem(last=False)
            return
        self._entries[digest] = entry
        self._by_credential[entry.principal.credential_id] = digest
        if entry.principal.registration_id is not None:
            self._by_registration.setdefault(entry.principal.registration_id, set()).add(digest)
        while len(self._entries) > self._max:
            _, evicted = self._entries.popitem(last=False)
            self._unindex(evicted)
            self.stats.evictions += 1

    def _unindex(self, entry: CachedCredential) -> None:
        self._by_credential.pop(entry.principal.credential_id, None)
        rid = entry.principal.registration_id or ""
        digests = self._by_registration.get(rid, set())
        digests.discard(entry.digest)
        if not digests:
            self._by_registration.pop(rid, None)

    # -- following the log -----------------------------------------------------------------

    async def _follow(self) -> None:
        if self._feed is None:
            self._feed_pool = await asyncpg.create_pool(
                self._feed_url, min_size=0, max_size=2, reset=reset_if_marked
            )
            self._feed = EventStore(self._feed_pool)
        backoff = Backoff(0.5, 5.0)
        while True:
            try:
                head = await self._feed.head_position()
                self.position = head
                self._epoch += 1
                self._live.set()
                log.info("credential_cache.live", position=head)
                backoff.reset()
                tail = self._feed.tail(head, idle_timeout=self._idle_timeout)
                async with contextlib.aclosing(cast(AsyncGenerator[RecordedEvent], tail)) as events:
                    async for recorded in events:
                        if recorded.type in WATCHED:
                            self._on_event(recorded)
                        self._hook(recorded)
                        self.position = recorded.position
            except Exception as exc:
                log.warning("credential_cache.feed_failed", error=f"{type(exc).__name__}: {exc}")
            self._reset()
            await asyncio.sleep(backoff.next())

    def _reset(self) -> None:
        """Stop serving from memory and forget everything: the feed may have missed events."""
        self._live.clear()
        self._entries.clear()
        self._by_credential.clear()
        self._by_registration.clear()
        self._negative.clear()
        self._recent.clear()
        self.stats.resets += 1

    def observe(self, recorded: Sequence[RecordedEvent]) -> None:
        """Apply events this process just appended, before the feed reads them back (it then
        applies them again, a no-op), so the appending process refuses a revoked key at once."""
        for event in recorded:
            if event.type in WATCHED:
                self._on_event(event)
            self._hook(event)

    def add_hook(self, types: Iterable[str], hook: Callable[[RecordedEvent], None]) -> None:
        for event_type in types:
            self.hooks.setdefault(event_type, []).append(hook)

    def _hook(self, recorded: RecordedEvent) -> None:
        for hook in self.hooks.get(recorded.type, ()):
            try:
                hook(recorded)
            except Exception:  # a listener's bug must not stop the feed
                log.exception("credential_cache.hook_failed", type=recorded.type)

    def _on_event(self, recorded: RecordedEvent) -> None:
        if not self._loads and not self._may_touch(recorded):
            return  # nothing held is about it: no need to decode it
        event = LEDGER.decode(recorded)
        version = recorded.stream_version
        key = event.token_hash if isinstance(event, CredentialIssued) else recorded.stream_id
        if isinstance(event, CredentialIssued):
            self._negative.pop(key, None)
        elif isinstance(event, RegistrationClaimed):
            for cached in self._by_registration.get(key, ()):
                self.stats.applied += apply(self._entries[cached], event, version)
        elif (digest := self._by_credential.get(key)) is not None:
            self.stats.applied += apply(self._entries[digest], event, version)
        if self._loads:  # a load in flight may have read the row before this event
            self._seq += 1
            self._recent.append(_Change(self._seq, key, version, event))
            if len(self._recent) > 10_000:
                self._overflow_seq = self._recent.popleft().seq

    def _may_touch(self, recorded: RecordedEvent) -> bool:
        """Whether an entry or a remembered unknown hash may be about `recorded`, told from its
        type and stream alone: a new credential can only clear an unknown hash, a claim only
        change its registration's entries, the rest only their credential's."""
        if recorded.type == "credential.issued":
            return bool(self._negative)
        if recorded.type == "registration.claimed":
            return recorded.stream_id in self._by_registration
        return recorded.stream_id in self._by_credential

    def _prune(self) -> None:
        oldest = min(self._loads, default=self._seq)  # no load in flight: keep nothing
        while self._recent and self._recent[0].seq <= oldest:
            self._recent.popleft()
