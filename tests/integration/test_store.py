"""The event store against a real Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import asyncpg
import pytest

from events.appends import GroupedStep, InlineProjector, Layers, PlannedProjector
from events.envelope import Metadata, RecordedEvent
from events.errors import ConcurrencyConflict, PartialDuplicate
from events.hashchain import verify_log
from events.store import ANY_VERSION, NO_STREAM, EventStore, StreamAppend, Wakeups
from migrations.roles import RUNTIME_ROLE
from tests.support.builders import (
    NOW,
    SAMPLE,
    ThingOpened,
    ThingRenamed,
    a_stream,
    opened,
)
from tests.support.waiting import wait_until


async def test_append_then_read_stream_round_trips(store: EventStore) -> None:
    """Appended events come back from read_stream decoded, with versions 1..n."""
    stream = a_stream()
    recorded = await store.append(
        stream,
        NO_STREAM,
        [
            opened("a", actor="op"),
            SAMPLE.new(
                ThingRenamed(name="b", reason="typo"),
                occurred_at=NOW,
                metadata=Metadata(correlation_id="c1"),
            ),
        ],
    )
    assert [r.stream_version for r in recorded] == [1, 2]
    back = await store.read_stream(stream)
    assert [SAMPLE.decode(r) for r in back] == [
        ThingOpened(name="a"),
        ThingRenamed(name="b", reason="typo"),
    ]
    assert back[0].decoded_metadata().actor == "op"
    assert back[1].decoded_metadata().correlation_id == "c1"
    assert [r.hash for r in back] == [r.hash for r in recorded]
    assert back[0].occurred_at == NOW


async def test_stale_expected_version_raises_and_writes_nothing(store: EventStore) -> None:
    """A stale expected version raises a typed conflict and adds no row."""
    stream = a_stream()
    await store.append(stream, NO_STREAM, [opened()])
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append(stream, NO_STREAM, [opened("again")])
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    assert len(await store.read_stream(stream)) == 1
    assert await store.head_position() == 1


async def test_two_concurrent_appends_with_same_expected_version_one_wins(
    pool: asyncpg.Pool,
) -> None:
    """Of two writers (separate stores, as two processes) at the same version, one wins."""
    stream = a_stream()
    first, second = EventStore(pool), EventStore(pool)
    try:
        await first.append(stream, NO_STREAM, [opened()])
        results = await asyncio.gather(
            first.append(stream, 1, [opened("x")]),
            second.append(stream, 1, [opened("y")]),
            return_exceptions=True,
        )
    finally:
        await first.close()
        await second.close()
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    wins = [r for r in results if isinstance(r, list)]
    assert len(conflicts) == 1
    assert len(wins) == 1
    assert [r.stream_version for r in await first.read_stream(stream)] == [1, 2]


async def test_same_expected_version_in_one_batch_one_wins(store: EventStore) -> None:
    """Two appends batched into one transaction still get optimistic concurrency."""
    stream = a_stream()
    results = await asyncio.gather(
        *(store.append(stream, NO_STREAM, [opened(str(i))]) for i in range(5)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, list) for r in results) == 1
    assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 4


async def test_appending_same_event_ids_again_is_idempotent(store: EventStore) -> None:
    """A retried append returns the original positions and adds no rows."""
    stream = a_stream()
    events = [opened("a"), opened("b")]
    first = await store.append(stream, NO_STREAM, events)
    again = await store.append(stream, NO_STREAM, events)
    assert [r.position for r in again] == [r.position for r in first]
    assert [r.hash for r in again] == [r.hash for r in first]
    assert await store.head_position() == 2


async def test_partial_duplicate_is_refused(store: EventStore) -> None:
    """Mixing stored and new event ids is an error, not a silent half-append."""
    stream = a_stream()
    stored = opened("a")
    await store.append(stream, NO_STREAM, [stored])
    with pytest.raises(PartialDuplicate):
        await store.append(stream, 1, [stored, opened("b")])
    assert await store.head_position() == 1


async def test_any_version_appends_without_check(store: EventStore) -> None:
    """ANY_VERSION skips the optimistic check but still numbers the stream."""
    stream = a_stream()
    await store.append(stream, ANY_VERSION, [opened()])
    recorded = await store.append(stream, ANY_VERSION, [opened()])
    assert recorded[0].stream_version == 2


async def test_inline_projector_runs_in_the_append_transaction(
    store: EventStore, owner_pool: asyncpg.Pool
) -> None:
    """A projector's writes commit with the events, and a failing one rolls them back."""
    await owner_pool.execute(
        "CREATE TABLE things (name text PRIMARY KEY); "
        f"GRANT SELECT, INSERT ON things TO {RUNTIME_ROLE}"
    )

    async def project(conn: asyncpg.Connection, events: object) -> None:
        for event in events:  # type: ignore[attr-defined]
            thing = SAMPLE.decode(event)
            assert isinstance(thing, ThingOpened)
            await conn.execute("INSERT INTO things VALUES ($1)", thing.name)

    await store.append(a_stream(), NO_STREAM, [opened("kept")], projector=project)
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.append(a_stream(), NO_STREAM, [opened("kept")], projector=project)
    assert await store.pool.fetchval("SELECT count(*) FROM things") == 1
    assert await store.head_position() == 1


async def _explode(conn: asyncpg.Connection, events: object) -> None:
    raise RuntimeError("projector bug")


def _plan_bug(events: Sequence[RecordedEvent]) -> Layers:
    raise RuntimeError("plan bug")


@pytest.mark.parametrize(
    "projector", [_explode, PlannedProjector(_plan_bug)], ids=["projector", "plan"]
)
async def test_a_failing_request_does_not_sink_its_batch(
    store: EventStore, projector: InlineProjector
) -> None:
    """When one request of a batch fails, the others of that batch still commit, and the log
    stays whole: a projector that raises under the lock, or a plan that raises before the
    transaction (events.appends.PlannedProjector)."""
    results = await asyncio.gather(
        store.append(a_stream(), NO_STREAM, [opened("ok1")]),
        store.append(a_stream(), NO_STREAM, [opened("bad")], projector=projector),
        store.append(a_stream(), NO_STREAM, [opened("ok2")]),
        return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[0], list)
    assert isinstance(results[2], list)
    assert await store.head_position() == 2
    assert (await verify_log(store.read_all)).ok


async def test_a_planned_projector_is_planned_before_the_append_and_commits_with_it(
    store: EventStore, owner_pool: asyncpg.Pool
) -> None:
    """A PlannedProjector's statements are made from the records before the database numbers
    them (position 0, no hash: planned before the transaction, so the append lock never
    waits on them), and commit with the events: one row per event of the batch."""
    await owner_pool.execute(
        "CREATE TABLE planned (name text PRIMARY KEY); "
        f"GRANT SELECT, INSERT ON planned TO {RUNTIME_ROLE}"
    )
    seen: list[tuple[int, bytes]] = []

    def plan(events: Sequence[RecordedEvent]) -> Layers:
        seen.extend((e.position, e.hash) for e in events)
        names = [(cast(ThingOpened, SAMPLE.decode(e)).name,) for e in events]
        return [{"INSERT INTO planned VALUES ($1)": names}]

    project = PlannedProjector(plan)
    names = [f"t{i}" for i in range(6)]
    recorded = await asyncio.gather(
        *(store.append(a_stream(), NO_STREAM, [opened(n)], projector=project) for n in names)
    )
    assert await store.pool.fetchval("SELECT array_agg(name ORDER BY name) FROM planned") == names
    assert len(seen) == len(names)
    assert set(seen) == {(0, b"")}  # planned from the pending records
    assert sorted(r[0].position for r in recorded) == list(range(1, len(names) + 1))
    assert all(r[0].hash for r in recorded)  # the callers get the numbered records


async def test_update_and_delete_on_events_are_refused(store: EventStore) -> None:
    """The database itself refuses UPDATE, DELETE and TRUNCATE on the event table."""
    await store.append(a_stream(), NO_STREAM, [opened()])
    async with store.pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE events SET type = 'x' WHERE position = 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM events WHERE position = 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE events")
    assert await store.head_position() == 1


async def _tamper(owner_pool: asyncpg.Pool, sql: str) -> None:
    """As the owner: the runtime role may not disable the trigger (tests/security)."""
    async with owner_pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await conn.execute(sql)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")


async def _fill(store: EventStore, n: int) -> None:
    for i in range(n):
        await store.append(a_stream(), NO_STREAM, [opened(f"n{i}")])


async def test_verify_names_the_position_of_an_altered_row(
    store: EventStore, owner_pool: asyncpg.Pool
) -> None:
    """An edited payload breaks the chain exactly at its position."""
    await _fill(store, 10)
    assert (await verify_log(store.read_all)).ok
    await _tamper(
        owner_pool,
        """UPDATE events SET payload = '{"type":"thing.opened","name":"evil"}'
                            WHERE position = 7""",
    )
    report = await verify_log(store.read_all, batch=3)
    assert report.first_break == 7
    assert report.checked == 6


async def test_verify_names_a_deleted_row(store: EventStore, owner_pool: asyncpg.Pool) -> None:
    """A deleted row shows as the first missing position."""
    await _fill(store, 5)
    await _tamper(owner_pool, "DELETE FROM events WHERE position = 3")
    report = await verify_log(store.read_all)
    assert report.first_break == 3


async def test_verify_names_reordered_rows(store: EventStore, owner_pool: asyncpg.Pool) -> None:
    """Swapping two rows' positions breaks the chain at the first of them."""
    await _fill(store, 5)
    await _tamper(
        owner_pool,
        """UPDATE events SET position = -position WHERE position IN (2, 4);
           UPDATE events SET position = 6 + position WHERE position IN (-2, -4);""",
    )
    report = await verify_log(store.read_all)
    assert report.first_break == 2


async def test_read_all_pages_by_position(store: EventStore) -> None:
    """read_all returns events strictly after a position, in order, up to a limit."""
    await _fill(store, 7)
    page = await store.read_all(2, 3)
    assert [e.position for e in page] == [3, 4, 5]
    assert await store.read_all(7, 10) == []


async def test_tail_wakes_on_notify_without_polling(store: EventStore, pool: asyncpg.Pool) -> None:
    """A tailer blocked on an empty log gets a new event well before its idle timeout."""
    seen: list[int] = []

    async def tail() -> None:
        async for event in store.tail(0, idle_timeout=30):
            seen.append(event.position)
            return

    task = asyncio.create_task(tail())
    # asleep on its LISTEN after reading the empty log: only the NOTIFY can wake it in time
    await wait_until(lambda: Wakeups.sleepers(pool) == 1, within=10, what="the tailer asleep")
    await store.append(a_stream(), NO_STREAM, [opened()])
    await asyncio.wait_for(task, 5)
    assert seen == [1]


async def test_wakeups_say_when_they_listen_and_when_they_sleep(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """`listening()` returns once the LISTEN is attached; `listeners`/`sleepers` count the
    Wakeups of a pool that listen and that sleep in `wait`, none once they are closed."""
    wakeups = Wakeups(pool)
    entered = asyncio.create_task(wakeups.__aenter__())
    await asyncio.wait_for(wakeups.listening(), 10)
    await entered
    try:
        assert (Wakeups.listeners(pool), Wakeups.sleepers(pool)) == (1, 0)
        waiting = asyncio.create_task(wakeups.wait(30))
        await wait_until(lambda: Wakeups.sleepers(pool) == 1, what="the Wakeups asleep")
        await store.append(a_stream(), NO_STREAM, [opened()])
        assert await asyncio.wait_for(waiting, 5) is True
        assert (Wakeups.listeners(pool), Wakeups.sleepers(pool)) == (1, 0)
    finally:
        await wakeups.__aexit__(None, None, None)
    assert Wakeups.listeners(pool) == 0


async def test_a_notification_and_a_cancel_in_one_turn_still_cancel(pool: asyncpg.Pool) -> None:
    """A tail being stopped while an append is notified must stop: with Python 3.11's
    `asyncio.wait_for` the notification won and the cancel was lost, so the credential
    feed's tail never ended and closing the process's Resources hung (seen in
    bench/app_cpu.py's teardown, one run in five)."""
    async with Wakeups(pool) as wakeups:
        for _ in range(20):
            wakeups.clear()
            waiting = asyncio.create_task(wakeups.wait(30))
            await wait_until(lambda: Wakeups.sleepers(pool) == 1, what="the Wakeups asleep")
            wakeups._notified()  # the NOTIFY's callback, as asyncpg calls it
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting


async def test_concurrent_writers_and_a_tailer_see_every_position_once(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """8 writers (own stores and connections) x 1,000 events; a reader tailing by position
    sees 1..8000 exactly once, in order, and the chain verifies."""
    writers, per_writer = 8, 1000
    total = writers * per_writer
    reader_pool = await asyncpg.create_pool(database_url, min_size=2, max_size=2)
    seen: list[int] = []

    async def read() -> None:
        async for event in EventStore(reader_pool).tail(0, batch=500, idle_timeout=1):
            seen.append(event.position)
            if len(seen) == total:
                return

    async def write(n: int) -> None:
        own_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        own = EventStore(own_pool)
        try:
            await asyncio.gather(
                *(
                    own.append(a_stream(), NO_STREAM, [opened(f"{n}-{i}")])
                    for i in range(per_writer)
                )
            )
        finally:
            await own.close()
            await own_pool.close()

    reader = asyncio.create_task(read())
    try:
        await asyncio.gather(*(write(n) for n in range(writers)))
        await asyncio.wait_for(reader, 60)
    finally:
        reader.cancel()
        await reader_pool.close()
    assert seen == list(range(1, total + 1))
    assert (await verify_log(EventStore(pool).read_all)).checked == total


async def test_writers_in_several_processes_append_in_one_trip(database_url: str) -> None:
    """Three stores on three pools (three processes' worth) appending at once: every batch
    goes in one trip (the database numbers and hashes it, whoever appended last), and the
    hashes it computed are the chain events.hashchain verifies."""
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=4) for _ in range(3)]
    stores = [EventStore(p) for p in pools]
    try:
        await asyncio.gather(
            *(
                s.append(a_stream(), NO_STREAM, [opened(f"{n}-{i}"), opened(f"{n}-{i}+")])
                for i in range(200)
                for n, s in enumerate(stores)
            )
        )
        for s in stores:
            assert s.batches.get("long_way", 0) == 0
            assert s.batches["one_trip"] > 0
        report = await verify_log(stores[0].read_all)
        assert report.ok
        assert report.checked == 3 * 200 * 2
    finally:
        for s, p in zip(stores, pools, strict=True):
            await s.close()
            await p.close()


async def test_writes_and_also_commit_with_the_events_or_not_at_all(
    store: EventStore, owner_pool: asyncpg.Pool
) -> None:
    """A request's writes go in before its events and `also` after them, in the same
    transaction: a stale version rolls both back, and the winner's stay."""
    await owner_pool.execute(
        "CREATE TABLE notes (note text PRIMARY KEY); "
        f"GRANT SELECT, INSERT ON notes TO {RUNTIME_ROLE}"
    )
    insert = "INSERT INTO notes VALUES ($1)"
    stream = a_stream()
    seen_events: list[int] = []

    async def count_events(conn: asyncpg.Connection) -> None:
        seen_events.append(await conn.fetchval("SELECT count(*) FROM events"))

    await store.append_many(
        [StreamAppend(stream, NO_STREAM, [opened("a")])],
        writes=[(insert, ("first",))],
        also=count_events,
    )
    with pytest.raises(ConcurrencyConflict):
        await store.append_many(
            [StreamAppend(stream, NO_STREAM, [opened("b")])],
            writes=[(insert, ("second",))],
            also=count_events,
        )
    assert await store.pool.fetchval("SELECT array_agg(note) FROM notes") == ["first"]
    assert seen_events[0] == 1  # `also` ran with the events in
    assert await store.head_position() == 1


async def test_append_many_writes_every_stream_or_none(store: EventStore) -> None:
    """A multi-stream append is atomic: one stale part and no stream gets anything."""
    first, second = a_stream(), a_stream()
    await store.append(second, NO_STREAM, [opened("exists")])
    recorded = await store.append_many(
        [StreamAppend(first, NO_STREAM, [opened("a")]), StreamAppend(second, 1, [opened("b")])]
    )
    assert [(r.stream_id, r.stream_version) for r in recorded] == [
        (first.stream_id, 1),
        (second.stream_id, 2),
    ]
    head = await store.head_position()
    with pytest.raises(ConcurrencyConflict):
        await store.append_many(
            [
                StreamAppend(a_stream(), NO_STREAM, [opened("c")]),
                StreamAppend(second, 1, [opened("stale")]),
            ]
        )
    assert await store.head_position() == head
    assert len(await store.read_stream(first)) == 1


async def test_concurrent_multi_stream_appends_on_a_shared_stream_one_wins(
    store: EventStore,
) -> None:
    """Racing multi-stream appends that share one stream version: exactly one commits."""
    shared = a_stream()
    await store.append(shared, NO_STREAM, [opened()])
    results = await asyncio.gather(
        *(
            store.append_many(
                [
                    StreamAppend(a_stream(), NO_STREAM, [opened()]),
                    StreamAppend(shared, 1, [opened()]),
                ]
            )
            for _ in range(6)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, list) for r in results) == 1
    assert sum(isinstance(r, ConcurrencyConflict) for r in results) == 5
    assert await store.head_position() == 3
    assert (await verify_log(store.read_all)).ok


@pytest.mark.parametrize(("hold", "batches"), [(0.5, 1), (0.0, 2)])
async def test_a_batch_waits_for_the_callers_on_their_way_back(
    database_url: str, hold: float, batches: int
) -> None:
    """Once this process has had 8 appends at once, a batch that would leave with 4 waits (at
    most the gather wait, widened here so that the test does not race the clock) for the 4
    that follow a moment later, as callers answered by the last commit do, and leaves with
    all 8; with a gather wait of 0 (AUTHLEDGER_WRITE_HOLD_MS=0) it leaves with 4 and the
    others make a batch of their own. A lone caller is never held. (Session 8's version of
    this test let eight callers loop and counted batches: whether they split into groups at
    all depended on the machine's speed.)"""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    store = EventStore(pool, gather_wait=hold)

    async def appends(count: int, after: float = 0.0) -> None:
        await asyncio.sleep(after)  # the second group's way back: time is what is tested
        await asyncio.gather(
            *(store.append(a_stream(), NO_STREAM, [opened()]) for _ in range(count))
        )

    try:
        for _ in range(3):
            await appends(1)
        assert store.batches.get("held", 0) == 0
        await appends(8)  # the process has now had 8 at once
        before = store.batches["one_trip"]
        await asyncio.gather(appends(4), appends(4, after=0.02))
        assert store.batches["one_trip"] - before == batches
        assert store.batches.get("long_way", 0) == 0
        assert store.batches.get("held", 0) == (1 if hold else 0)
    finally:
        await store.close()
        await pool.close()


async def test_grouped_steps_of_a_batch_run_in_one_call_and_alone_when_refused(
    store: EventStore,
) -> None:
    """GroupedSteps (the replay guard's) of a batch of several run in one `together` call; when
    it refuses, the batch is committed again request by request, each step `alone`, and only
    the refused request fails."""
    together_calls: list[list[tuple[object, ...]]] = []
    alone_calls: list[object] = []

    def step(name: str) -> GroupedStep:
        async def alone(conn: asyncpg.Connection) -> None:
            alone_calls.append(name)
            if name == "refused":
                raise LookupError("refused alone")

        async def together(conn: asyncpg.Connection, args: list[tuple[object, ...]]) -> None:
            together_calls.append(args)
            if ("refused",) in args:
                raise RuntimeError("one of them is refused")

        return GroupedStep("test", (name,), alone, together)

    async def append(name: str) -> None:
        await store.append_many(
            [StreamAppend(a_stream(), NO_STREAM, [opened(name)])], also=step(name)
        )

    await asyncio.gather(*(append(n) for n in ("a", "b", "c")))
    assert together_calls == [[("a",), ("b",), ("c",)]]
    assert alone_calls == []
    together_calls.clear()
    outcomes = await asyncio.gather(
        *(append(n) for n in ("d", "refused", "e")), return_exceptions=True
    )
    assert together_calls == [[("d",), ("refused",), ("e",)]]
    assert alone_calls == ["d", "refused", "e"]
    assert outcomes[0] is None
    assert isinstance(outcomes[1], LookupError)
    assert outcomes[2] is None
