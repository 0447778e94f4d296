"""CredentialCache against real Postgres: one query per credential, then memory kept right by
the event feed, including for events another process appends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from events.catalogue import Event
from events.credential import CredentialIssued, CredentialRescoped, CredentialRevoked
from events.envelope import RecordedEvent, StreamRef
from events.ledger import LEDGER
from events.registration import RegistrationClaimed, RegistrationCreated
from events.store import EventStore
from projections.runner import project
from service.caches.credentials import CredentialCache
from service.caches.principal import Principal
from service.crypto.tokens import new_api_key, new_credential_id, new_registration_id, token_hash
from tests.support.waiting import timed, wait_until

NOW = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
LOAD = "FROM credentials c"  # the text of the cache's one query


@dataclass
class Counted:
    """A pool whose every query is recorded."""

    pool: asyncpg.Pool
    queries: list[str] = field(default_factory=list)

    @property
    def loads(self) -> int:
        return sum(LOAD in q for q in self.queries)


@pytest.fixture
async def counted(database_url: str) -> AsyncIterator[Counted]:
    seen: list[str] = []

    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: seen.append(record.query))

    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4, init=log_queries)
    try:
        yield Counted(created, seen)
    finally:
        await created.close()


@pytest.fixture
async def cache(counted: Counted, store: EventStore) -> AsyncIterator[CredentialCache]:
    created = CredentialCache(counted.pool, store, idle_timeout=5.0)
    await created.start()
    assert created.live
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def other_process(database_url: str) -> AsyncIterator[EventStore]:
    """An event store on a pool of its own, as another service process would hold."""
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    other = EventStore(created)
    try:
        yield other
    finally:
        await other.close()
        await created.close()


async def append(
    store: EventStore, stream_type: str, stream_id: str, version: int, *events: Event
) -> list[RecordedEvent]:
    new = [LEDGER.new(event, occurred_at=NOW) for event in events]
    stream = StreamRef("default", stream_type, stream_id)
    return await store.append(stream, version, new, projector=project)


async def issue(
    store: EventStore,
    *,
    scopes: tuple[str, ...] = ("api.read",),
    registration_id: str | None = None,
    expires_at: datetime | None = None,
    token: str | None = None,
) -> tuple[str, str]:
    """A new API key's (credential id, plain value), issued through the log."""
    credential_id, plain = new_credential_id(), token or new_api_key()
    issued = CredentialIssued(
        credential_id=credential_id,
        kind="api_key",
        token_hash=token_hash(plain),
        scopes=scopes,
        issued_via="anonymous" if registration_id else "id_jag",
        registration_id=registration_id,
        expires_at=expires_at,
    )
    await append(store, "credential", credential_id, 0, issued)
    return credential_id, plain


async def test_a_credential_costs_one_query_then_none(
    cache: CredentialCache, counted: Counted, store: EventStore
) -> None:
    """The first check loads the row; the next ones are answered from memory."""
    credential_id, plain = await issue(store, scopes=("api.read", "api.write"))
    first = await cache.check(plain, NOW)
    assert first == Principal(
        credential_id=credential_id,
        tenant_id="default",
        credential_type="api_key",
        scopes=("api.read", "api.write"),
        registration_id=None,
        user_id=None,
        claim_state=None,
        expires_at=None,
        issued_at=NOW,
    )
    assert counted.loads == 1
    for _ in range(3):
        assert await cache.check(plain, NOW) == first
    assert counted.loads == 1
    assert (cache.stats.misses, cache.stats.hits, cache.stats.loads) == (1, 3, 1)


async def test_concurrent_misses_share_one_query(
    cache: CredentialCache, counted: Counted, store: EventStore
) -> None:
    """Twenty requests presenting a cold credential at once cause a single load."""
    _, plain = await issue(store)
    found = await asyncio.gather(*(cache.check(plain, NOW) for _ in range(20)))
    assert all(p is not None for p in found)
    assert counted.loads == 1


async def test_revocation_by_another_process_is_refused_within_a_second(
    cache: CredentialCache, counted: Counted, store: EventStore, other_process: EventStore
) -> None:
    """A revoke appended through another pool and store reaches this cache by the feed."""
    credential_id, plain = await issue(store)
    assert await cache.check(plain, NOW) is not None
    await append(other_process, "credential", credential_id, 1, CredentialRevoked(reason="admin"))

    async def refused() -> bool:
        return await cache.check(plain, NOW) is None

    took = await timed(refused, within=1.0, what="the cache refusing the key", every=0.005)
    assert counted.loads == 1  # refused from memory: the feed told it, nobody asked the table
    assert await cache.verdict(plain, NOW) == "revoked"
    print(f"revocation seen after {took * 1000:.1f} ms")


async def test_expiry_by_time_needs_no_event(cache: CredentialCache, store: EventStore) -> None:
    """A credential past its expires_at is refused although no expiry event was recorded."""
    _, plain = await issue(store, expires_at=NOW + timedelta(hours=1))
    assert await cache.check(plain, NOW + timedelta(minutes=59)) is not None
    assert await cache.check(plain, NOW + timedelta(hours=1)) is None
    assert await cache.verdict(plain, NOW + timedelta(hours=2)) == "expired"


async def test_unknown_tokens_are_cached_until_issued(
    cache: CredentialCache, counted: Counted, store: EventStore
) -> None:
    """An unknown hash is remembered briefly; issuing that token clears it at once."""
    plain = new_api_key()
    assert await cache.verdict(plain, NOW) == "unknown"
    assert await cache.check(plain, NOW) is None
    assert (counted.loads, cache.stats.negative_hits) == (1, 1)
    await issue(store, token=plain)

    async def accepted() -> bool:
        return await cache.check(plain, NOW) is not None

    await wait_until(accepted, within=1.0, what="the cache accepting the new key", every=0.005)


async def test_a_claim_rescopes_and_binds_the_cached_key(
    cache: CredentialCache, counted: Counted, store: EventStore
) -> None:
    """registration.claimed and credential.rescoped reach the cached entry from the feed."""
    registration_id = new_registration_id()
    credential_id, plain = await issue(
        store, registration_id=registration_id, expires_at=NOW + timedelta(days=1)
    )
    created = RegistrationCreated(
        registration_id=registration_id,
        kind="anonymous",
        requested_credential_type="api_key",
        claim_token_hash=token_hash("clm_x"),
        expires_at=NOW + timedelta(days=1),
        pre_claim_scopes=("api.read",),
        post_claim_scopes=("api.read", "api.write"),
        credential_id=credential_id,
    )
    await append(store, "registration", registration_id, 0, created)
    before = await cache.check(plain, NOW)
    assert before is not None
    assert (before.claim_state, before.scopes, before.user_id) == ("unclaimed", ("api.read",), None)

    claimed = RegistrationClaimed(attempt_id="cla_x", user_id="usr_x", credential_id=credential_id)
    rescoped = CredentialRescoped(scopes=("api.read", "api.write"), user_id="usr_x")
    await append(store, "registration", registration_id, 1, claimed)
    await append(store, "credential", credential_id, 1, rescoped)

    async def claimed_seen() -> bool:
        found = await cache.check(plain, NOW + timedelta(days=2))  # the claim lifted the expiry
        return found is not None and found.claim_state == "claimed"

    await wait_until(claimed_seen, within=1.0, what="the claim in the cache", every=0.005)
    after = await cache.check(plain, NOW)
    assert after is not None
    assert (after.scopes, after.user_id, after.expires_at) == (
        ("api.read", "api.write"),
        "usr_x",
        None,
    )
    assert counted.loads == 1


async def test_memory_is_bounded_least_recently_used_first(
    counted: Counted, store: EventStore
) -> None:
    """With room for two entries, a third evicts the least recently used one."""
    cache = CredentialCache(counted.pool, store, max_entries=2)
    await cache.start()
    try:
        tokens = [(await issue(store))[1] for _ in range(3)]
        for plain in tokens:
            assert await cache.check(plain, NOW) is not None
        assert (len(cache), cache.stats.evictions) == (2, 1)
        assert await cache.check(tokens[2], NOW) is not None  # still cached
        assert counted.loads == 3
        assert await cache.check(tokens[0], NOW) is not None  # evicted: loaded again
        assert counted.loads == 4
    finally:
        await cache.close()


async def test_an_event_during_a_load_is_applied_to_what_it_read(
    counted: Counted, store: EventStore, other_process: EventStore
) -> None:
    """A revoke the feed reads while a load is in flight is not lost to the stale row."""
    credential_id, plain = await issue(store)

    class SlowPool:
        """Reads the row, then lets the revoke land and reach the feed before answering."""

        async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
            row = await counted.pool.fetchrow(query, *args)
            revoked = await append(
                other_process, "credential", credential_id, 1, CredentialRevoked(reason="x")
            )

            async def fed() -> bool:
                return slow.position >= revoked[-1].position

            await wait_until(fed, within=1.0, what="the slow cache fed", every=0.005)
            return row

    slow = CredentialCache(SlowPool(), store)  # type: ignore[arg-type]
    await slow.start()
    try:
        assert await slow.verdict(plain, NOW) == "revoked"
        assert await slow.verdict(plain, NOW) == "revoked"  # and it is cached so
        assert slow.stats.loads == 1
    finally:
        await slow.close()
