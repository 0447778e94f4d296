"""The checkpoint worker against a real Postgres: every N events or M minutes, only over a
chain it checked, once per position however many workers run, and verifiable after the key
that signed it was retired."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from structlog.testing import capture_logs

from events.clock import ManualClock
from events.store import NO_STREAM, EventStore
from service.audit.publisher import Publisher
from service.audit.signed import verify as verify_checkpoint
from service.audit.verify import load_keys, verify
from service.crypto.signing import KeyRing
from service.dev.embedded import free_port
from tests.support.audit import checkpoint_stream
from tests.support.backends import Backend
from tests.support.builders import a_stream, opened
from tests.support.nats import NatsNames
from tests.support.relay_support import jetstream
from workers.checkpoints import CheckpointConfig, CheckpointWorker

SECRET = "s" * 40
CONFIG = CheckpointConfig(every=5, minutes=5, idle_timeout=30)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def timed_store(pool: asyncpg.Pool, clock: ManualClock) -> AsyncIterator[EventStore]:
    """A store whose recorded-at follows the manual clock."""
    created = EventStore(pool, clock=clock)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def ring(pool: asyncpg.Pool, clock: ManualClock) -> KeyRing:
    created = KeyRing(SECRET)
    await created.ensure_active(pool, clock.now())
    return created


def worker(pool: asyncpg.Pool, ring: KeyRing, clock: ManualClock) -> CheckpointWorker:
    return CheckpointWorker(pool, ring, config=CONFIG, clock=clock)


async def _fill(store: EventStore, n: int) -> None:
    for _ in range(n):
        await store.append(a_stream(), NO_STREAM, [opened()])


async def _signed(pool: asyncpg.Pool) -> list[int]:
    return [r[0] for r in await pool.fetch("SELECT position FROM chain_checkpoints ORDER BY 1")]


async def test_every_n_events_then_the_head_after_m_minutes(
    timed_store: EventStore, pool: asyncpg.Pool, ring: KeyRing, clock: ManualClock
) -> None:
    signer = worker(pool, ring, clock)
    await _fill(timed_store, 12)
    assert [c.position for c in await signer.run_once()] == [5, 10]
    clock.advance(timedelta(minutes=4, seconds=59))
    assert await signer.run_once() == []  # event 11 has waited less than 5 minutes
    clock.advance(timedelta(seconds=1))
    assert [c.position for c in await signer.run_once()] == [12]
    assert await signer.run_once() == []
    assert await _signed(pool) == [5, 10, 12]
    keys = await load_keys(pool)
    jws = await pool.fetchval("SELECT jws FROM chain_checkpoints WHERE position = 12")
    head_hash = await pool.fetchval("SELECT hash FROM events WHERE position = 12")
    checkpoint = verify_checkpoint(jws, keys)
    assert (checkpoint.position, checkpoint.chain_hash, checkpoint.signed_at) == (
        12,
        head_hash,
        clock.now(),
    )


async def test_a_broken_chain_is_not_signed(
    timed_store: EventStore,
    pool: asyncpg.Pool,
    owner_pool: asyncpg.Pool,
    ring: KeyRing,
    clock: ManualClock,
) -> None:
    signer = worker(pool, ring, clock)
    await _fill(timed_store, 7)
    async with owner_pool.acquire() as conn, conn.transaction():  # the runtime may not
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await conn.execute("""UPDATE events SET metadata = '{"actor":"x"}' WHERE position = 3""")
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    assert await signer.run_once(force=True) == []
    assert (signer.stats.broken, await _signed(pool)) == (1, [])


async def test_the_running_worker_wakes_on_appends_and_on_the_clock(
    timed_store: EventStore, pool: asyncpg.Pool, ring: KeyRing, clock: ManualClock
) -> None:
    signer = worker(pool, ring, clock)
    task = asyncio.create_task(signer.run())
    try:
        await _fill(timed_store, 6)
        async with asyncio.timeout(10):
            await signer.wait_for(lambda s: s.last_position == 5)
            deadline = clock.now() + timedelta(minutes=5)  # when event 6 has waited enough
            await signer.wait_for(lambda s: s.asleep_until == deadline)
        clock.advance(timedelta(minutes=5))
        async with asyncio.timeout(10):
            await signer.wait_for(lambda s: s.last_position == 6)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await _signed(pool) == [5, 6]


async def test_workers_side_by_side_sign_each_position_once(
    timed_store: EventStore, pool: asyncpg.Pool, ring: KeyRing, clock: ManualClock
) -> None:
    await _fill(timed_store, 23)
    signers = [worker(pool, KeyRing(SECRET), clock) for _ in range(3)]
    results = await asyncio.gather(*(s.run_once() for s in signers))
    assert sorted(c.position for r in results for c in r) == [5, 10, 15, 20]
    assert await _signed(pool) == [5, 10, 15, 20]


async def test_checkpoints_of_a_retired_key_still_verify(
    timed_store: EventStore, pool: asyncpg.Pool, ring: KeyRing, clock: ManualClock
) -> None:
    """The access-token JWKS drops a retired key once its tokens are dead; its checkpoints
    keep verifying, with the JWK kept beside them."""
    signer = worker(pool, ring, clock)
    await _fill(timed_store, 5)
    [old] = await signer.run_once()
    clock.advance(timedelta(days=30))
    await ring.rotate(pool, clock.now())
    await _fill(timed_store, 5)
    [new] = await signer.run_once()
    assert old.kid != new.kid
    clock.advance(timedelta(hours=2))  # the old key's last access tokens are dead
    assert [k["kid"] for k in ring.jwks(clock.now(), timedelta(hours=1))["keys"]] == [new.kid]
    report = await verify(pool)
    assert (report.ok, report.checkpoints, report.anchored) == (True, 2, 10)
    assert set(await load_keys(pool)) == {old.kid, new.kid}


async def test_checkpoints_signed_while_nats_is_away_are_published_later(  # noqa: PLR0917
    timed_store: EventStore,
    pool: asyncpg.Pool,
    ring: KeyRing,
    clock: ManualClock,
    backend: Backend,
    nats_names: NatsNames,
) -> None:
    """NATS unreachable: the round still signs into the database (publication is logged as
    unavailable); a later round publishes what waits, in order, though nothing new is due."""
    where = checkpoint_stream(nats_names)
    away = Publisher(f"nats://127.0.0.1:{free_port()}", where)
    await _fill(timed_store, 11)
    with capture_logs() as logs:
        signed = await CheckpointWorker(
            pool, ring, config=CONFIG, clock=clock, publisher=away
        ).run_once()
    await away.close()
    assert [c.position for c in signed] == [5, 10]
    assert any(e["event"] == "checkpoints.publish_unavailable" for e in logs)
    async with jetstream(backend.nats_url, delete=where.stream) as js:
        back = Publisher(backend.nats_url, where)
        try:
            signer = CheckpointWorker(pool, ring, config=CONFIG, clock=clock, publisher=back)
            assert await signer.run_once() == []
            assert (signer.stats.published, signer.stats.published_position) == (2, 10)
            newest = await where.newest(js)
            assert newest is not None
            assert verify_checkpoint(newest, await load_keys(pool)).position == 10
            assert (await js.stream_info(where.stream)).state.messages == 2
        finally:
            await back.close()
