"""The relay (event log -> JetStream) against real Postgres and NATS."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from structlog.testing import capture_logs

from events.hashchain import check_chain
from events.store import EventStore, Wakeups
from service.dev.embedded import EmbeddedNats, free_port
from service.settings import Settings
from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.relay_support import (
    WAIT,
    RelayProcess,
    append_events,
    checkpoint,
    fast_config,
    jetstream,
    published_through,
    running,
    stored_messages,
    wait_for_checkpoint,
    wait_for_lock_waiters,
)
from tests.support.waiting import wait_until
from workers.feed import EVENT_TYPE_HEADER, MSG_ID_HEADER, POSITION_HEADER, decode_event
from workers.relay import Relay
from workers.runner import HELD_CONNECTIONS, run_workers


@pytest.fixture
async def js(backend: Backend, nats_names: NatsNames) -> AsyncIterator[JetStreamContext]:
    """JetStream on the suite's NATS; this test's stream is deleted afterwards."""
    async with jetstream(backend.nats_url, delete=nats_names.stream) as context:
        yield context


async def assert_exactly_once(js: JetStreamContext, stream: str, store: EventStore) -> None:
    """The stream holds every event of the log once, under its own event id."""
    head = await store.head_position()
    stored = await stored_messages(js, stream)
    events = {e.position: e for e in await store.read_all(0, head + 1)}
    duplicates = [p for p, n in Counter(m.position for m in stored).items() if n > 1]
    assert duplicates == []
    assert len(stored) == head
    assert {m.position for m in stored} == set(range(1, head + 1))
    assert {m.headers[MSG_ID_HEADER] for m in stored} == {str(e.event_id) for e in events.values()}


async def test_relays_every_event_in_order_with_subjects_and_headers(
    store: EventStore,
    pool: asyncpg.Pool,
    backend: Backend,
    js: JetStreamContext,
    nats_names: NatsNames,
) -> None:
    """N events reach a stream the relay creates, in position order, with the subject,
    headers and a body that decodes back to the stored event (its hash chain holds)."""
    await append_events(store, 300, tenants=("acme", "globex"))
    config = fast_config(nats_names)
    with capture_logs() as logs:
        async with running(relay := Relay(pool, backend.nats_url, config)):
            await published_through(relay, 300)
    stored = await stored_messages(js, nats_names.stream)
    info = await js.stream_info(nats_names.stream)
    assert info.config.subjects == [f"{nats_names.subject_prefix}.>"]
    assert info.config.storage == StorageType.FILE
    assert info.config.duplicate_window == 120.0
    assert info.state.messages == 300
    assert [m.position for m in stored] == list(range(1, 301))
    assert await checkpoint(pool, config.checkpoint_name) == 300
    recorded = await store.read_all(0, 1000)
    for message, event in zip(stored, recorded, strict=True):
        assert message.subject == (
            f"{nats_names.subject_prefix}.{event.tenant_id}.thing.{event.type}"
        )
        assert message.headers[MSG_ID_HEADER] == str(event.event_id)
        assert message.headers[POSITION_HEADER] == str(event.position)
        assert message.headers[EVENT_TYPE_HEADER] == event.type
        assert decode_event(message.data) == event
    assert {m.subject.split(".")[1] for m in stored} == {"acme", "globex"}
    assert stored[0].subject == f"{nats_names.subject_prefix}.acme.thing.thing.opened"
    report, _, _ = check_chain(decode_event(m.data) for m in stored)
    assert report.ok
    assert report.checked == 300
    body = decode_event(stored[0].data)
    assert json.loads(body.payload) == {"type": "thing.opened", "name": "n0"}
    assert json.loads(body.metadata) == {}
    published = [e for e in logs if e["event"] == "relay.published"]
    assert sum(e["count"] for e in published) == 300
    assert not any("n0" in repr(e) for e in logs)  # no payload in any log line
    assert logs[-1]["event"] == "relay.stopped"  # cancelled: it stopped cleanly


async def test_sigkill_and_restart_three_times_loses_and_repeats_nothing(  # noqa: PLR0917
    store: EventStore,
    pool: asyncpg.Pool,
    backend: Backend,
    database_url: str,
    js: JetStreamContext,
    nats_names: NatsNames,
    tmp_path: Path,
) -> None:
    """A relay process SIGKILLed three times mid-stream while events keep coming leaves the
    stream with every event exactly once."""
    backlog, rounds, per_round = 1200, 40, 50
    total = backlog + rounds * per_round
    name = fast_config(nats_names).checkpoint_name
    log = tmp_path / "relay.log"

    async def write() -> None:
        for _ in range(rounds):
            await append_events(store, per_round)
            await asyncio.sleep(0.02)  # the pace of the writes is the test's load

    await append_events(store, backlog)  # so each kill lands while windows are in flight
    writer = asyncio.create_task(write())
    try:
        for delay in (0.0, 0.004, 0.011):
            reached = await checkpoint(pool, name)
            relay = RelayProcess.start(database_url, backend.nats_url, nats_names, log)
            try:
                await wait_for_checkpoint(pool, name, reached + 1, poll=0.001)
                await asyncio.sleep(delay)  # where in its window the kill lands
            finally:
                relay.kill()
        await writer
        relay = RelayProcess.start(database_url, backend.nats_url, nats_names, log)
        try:
            await wait_for_checkpoint(pool, name, total)
        finally:
            relay.kill()
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    assert await store.head_position() == total
    assert log.read_text().count("relay.lock_acquired") == 4
    await assert_exactly_once(js, nats_names.stream, store)


async def test_no_duplicate_after_crash_between_ack_and_checkpoint_past_dedupe_window(
    store: EventStore,
    pool: asyncpg.Pool,
    backend: Backend,
    js: JetStreamContext,
    nats_names: NatsNames,
) -> None:
    """With a 1 s dedupe window long gone, a checkpoint left behind its acked messages (as a
    crash between ack and checkpoint leaves it) still causes no duplicate: the tail scan
    skips what is stored."""
    config = fast_config(nats_names)
    name = config.checkpoint_name
    await js.add_stream(
        StreamConfig(
            name=nats_names.stream,
            subjects=[f"{nats_names.subject_prefix}.>"],
            storage=StorageType.FILE,
            duplicate_window=1.0,
        )
    )
    await append_events(store, 200)
    async with running(relay := Relay(pool, backend.nats_url, config)):
        await published_through(relay, 200)
    for reset_to, skipped, added in ((123, 77, 50), (0, 250, 10)):
        await pool.execute("UPDATE checkpoints SET position = $1 WHERE name = $2", reset_to, name)
        await asyncio.sleep(1.2)  # past the dedupe window
        await append_events(store, added)
        relay = Relay(pool, backend.nats_url, config)
        async with running(relay):
            head = await store.head_position()
            await published_through(relay, head)
        await assert_exactly_once(js, nats_names.stream, store)
        assert (relay.stats.skipped, relay.stats.published) == (skipped, added)
        assert relay.stats.deduplicated == 0  # not saved by the dedupe window


async def test_nats_outage_keeps_writes_going_and_catches_up_exactly_once(
    store: EventStore,
    pool: asyncpg.Pool,
    nats_names: NatsNames,
    tmp_path: Path,
) -> None:
    """With NATS stopped, appends still succeed and the relay retries without crashing; once
    NATS is back every event is published exactly once."""
    folder, port = tmp_path / "nats", free_port()
    server = await asyncio.to_thread(EmbeddedNats.start, folder, port=port)
    relay = Relay(pool, server.url, fast_config(nats_names))
    name = relay.config.checkpoint_name
    try:
        async with running(relay) as task, jetstream(server.url) as js:
            await append_events(store, 100)
            await published_through(relay, 100)

            async def write() -> None:
                for _ in range(30):
                    await append_events(store, 10)
                    await asyncio.sleep(0.01)  # writes keep coming while NATS is down

            writer = asyncio.create_task(write())

            async def writing() -> bool:
                return await store.head_position() > 100

            await wait_until(writing, what="the writer's first append")
            await asyncio.to_thread(server.stop)
            await asyncio.wait_for(writer, 10)  # the store never waits for NATS
            assert await store.head_position() == 400
            retried = relay.stats.retries
            await published_through(relay, 0, retries=retried + 3)  # it retries meanwhile
            assert not task.done()
            assert await checkpoint(pool, name) < 400
            server = await asyncio.to_thread(EmbeddedNats.start, folder, port=port)
            await published_through(relay, 400, within=30)
            await assert_exactly_once(js, nats_names.stream, store)
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_second_relay_waits_for_the_lock_until_the_first_stops(
    store: EventStore,
    database_url: str,
    backend: Backend,
    js: JetStreamContext,
    nats_names: NatsNames,
) -> None:
    """A second relay blocks on the advisory lock, publishes nothing while the first runs,
    then takes over from the first one's checkpoint when it stops."""
    config = fast_config(nats_names)
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=4) for _ in range(2)]
    first, second = (Relay(p, backend.nats_url, config) for p in pools)
    pool = pools[0]
    try:
        async with running(first) as first_task:
            await asyncio.wait_for(first.wait_for(lambda s: s.holding_lock), WAIT)
            async with running(second) as second_task:
                await wait_for_lock_waiters(pool, 1)
                await append_events(store, 50)
                await published_through(first, 50)
                await asyncio.sleep(0.2)  # the second relay could act now, if it were wrong
                assert not second.stats.holding_lock
                assert (second.stats.published, second.stats.scans) == (0, [])
                assert first.stats.published == 50
                async with (
                    asyncio.timeout(2),
                    running(Relay(pools[1], backend.nats_url, config)) as third,
                ):
                    await wait_for_lock_waiters(pool, 2)
                assert third.cancelled()  # a relay waiting for the lock stops at once on cancel
                await wait_for_lock_waiters(pool, 1)
                first_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await first_task
                await asyncio.wait_for(second.wait_for(lambda s: s.holding_lock), WAIT)
                await append_events(store, 25)
                await published_through(second, 75)
                assert (second.stats.published, second.stats.skipped) == (25, 0)
                assert not second_task.done()
        await assert_exactly_once(js, nats_names.stream, store)
    finally:
        for p in pools:
            await p.close()


async def test_postgres_blip_makes_the_relay_start_over_not_crash(
    store: EventStore,
    database_url: str,
    backend: Backend,
    js: JetStreamContext,
    nats_names: NatsNames,
) -> None:
    """When every relay connection is terminated (a Postgres blip), the relay retries,
    takes its lock again and goes on, still exactly once."""
    config = fast_config(nats_names)
    relay_pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=4, server_settings={"application_name": "relay_blip"}
    )
    terminate = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                   WHERE application_name = 'relay_blip'"""
    relay = Relay(relay_pool, backend.nats_url, config)
    try:
        with capture_logs() as logs:
            async with running(relay) as task:
                await append_events(store, 100)
                await published_through(relay, 100)
                assert await store.pool.fetchval(terminate) >= 2  # the lock's and LISTEN's
                await append_events(store, 100)
                await published_through(relay, 200)
                assert not task.done()
        await assert_exactly_once(js, nats_names.stream, store)
        retries = [e["event"] for e in logs if e["event"] in ("relay.retry", "relay.restart")]
        assert retries == ["relay.restart"]  # the session started over; no NATS retry
        assert sum(e["event"] == "relay.lock_acquired" for e in logs) == 2
    finally:
        await relay_pool.close()


def _worker_settings(database_url: str, backend: Backend, nats_names: NatsNames) -> Settings:
    """What run_workers needs: this test's database, stream and subjects."""
    return Settings(
        database_url=database_url,
        nats_url=backend.nats_url,
        nats_stream=nats_names.stream,
        nats_subject_prefix=nats_names.subject_prefix,
        smtp_url="smtp://127.0.0.1:9",  # the mailer runs too; nothing is queued for it
        secret_key="k" * 40,
    )


async def test_run_workers_runs_the_relay_until_stop_is_set(
    store: EventStore,
    database_url: str,
    backend: Backend,
    js: JetStreamContext,
    nats_names: NatsNames,
) -> None:
    """run_workers relays to the configured stream and returns promptly once stop is set."""
    settings = _worker_settings(database_url, backend, nats_names)
    stop = asyncio.Event()
    workers = asyncio.create_task(run_workers(settings, store.pool, stop))
    await append_events(store, 40)
    await wait_for_checkpoint(store.pool, f"relay:{nats_names.stream}", 40)
    stop.set()
    await asyncio.wait_for(workers, 2)
    await assert_exactly_once(js, nats_names.stream, store)


async def test_the_workers_hold_the_connections_their_pool_is_sized_for(
    database_url: str, backend: Backend, js: JetStreamContext, nats_names: NatsNames
) -> None:
    """Settled and idle (the five that LISTEN asleep), the workers hold exactly
    HELD_CONNECTIONS of their pool for as long as they run: the count `authledger worker` adds
    to its pool, so that a busy worker never takes the connection the relay needs. Stopped,
    they give every one back."""
    settings = _worker_settings(database_url, backend, nats_names)
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=HELD_CONNECTIONS + 10)

    def in_use() -> int:
        return pool.get_size() - pool.get_idle_size()

    stop = asyncio.Event()
    workers = asyncio.create_task(run_workers(settings, pool, stop))
    try:
        await wait_until(
            lambda: Wakeups.sleepers(pool) == 5 and in_use() == HELD_CONNECTIONS,
            within=15,
            what=f"the workers to hold {HELD_CONNECTIONS} connections, idle",
        )
    finally:
        stop.set()
        await asyncio.wait_for(workers, 5)
        assert in_use() == 0
        await pool.close()
