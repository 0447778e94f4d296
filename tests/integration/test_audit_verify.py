"""`authledger audit verify` against a real Postgres: a clean log verifies, and an edited,
deleted or reordered row, a rewritten chain, a cut tail or a forged checkpoint is named by
its position (the append-only guard is disabled inside the test to do the damage)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
import pytest

from events.clock import ManualClock
from events.envelope import RecordedEvent
from events.hashchain import check_chain, event_hash, framed_content
from events.store import NO_STREAM, EventStore, row_to_event
from service.audit.verify import Q, verify
from service.crypto.signing import KeyRing
from tests.support.builders import a_stream, opened
from workers.checkpoints import CheckpointConfig, CheckpointWorker

SECRET = "s" * 40
NAMES = ["plain", 'é中🙂 \\u0000-ish "quoted"', "ascii"]


@pytest.fixture
async def ring(pool: asyncpg.Pool) -> KeyRing:
    created = KeyRing(SECRET)
    await created.ensure_active(pool, ManualClock().now())
    return created


async def _fill(store: EventStore, n: int) -> None:
    for i in range(n):
        await store.append(a_stream(), NO_STREAM, [opened(f"{NAMES[i % 3]} {i}")])


async def _sign(pool: asyncpg.Pool, ring: KeyRing, every: int = 5) -> list[int]:
    worker = CheckpointWorker(pool, ring, config=CheckpointConfig(every=every))
    return [c.position for c in await worker.run_once(force=True)]


async def _tamper(pool: asyncpg.Pool, *statements: str) -> None:
    """As the owner (`owner_pool`): the runtime may not touch the trigger (tests/security)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        for sql in statements:
            await conn.execute(sql)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")


async def test_a_clean_log_verifies_with_its_checkpoints(
    store: EventStore, pool: asyncpg.Pool, ring: KeyRing
) -> None:
    await _fill(store, 23)
    assert await _sign(pool, ring) == [5, 10, 15, 20, 23]
    report = await verify(pool, batch=4)  # several batches, two connections taking turns
    assert report.ok, report.problems
    assert (report.head, report.checked, report.checkpoints, report.anchored) == (23, 23, 5, 23)
    assert report.as_json()["unanchored_events"] == 0


async def test_postgres_frames_rows_exactly_as_the_hashing_code(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """The verifier hashes bytes Postgres lays out; they must be the bytes the writer hashed,
    for any text (non-ASCII, escapes, quotes) and any timestamp."""
    await _fill(store, 9)
    framed = await pool.fetch(Q["framed"], 0, 100, 100)
    rows = [row_to_event(r) for r in await pool.fetch(Q["rows_between"], 1, 100)]
    assert len(framed) == len(rows) == 9
    for (position, _, sql_bytes), event in zip(framed, rows, strict=True):
        assert position == event.position
        assert sql_bytes == framed_content(**_fields(event))


async def test_an_edited_row_is_named(
    store: EventStore, pool: asyncpg.Pool, owner_pool: asyncpg.Pool
) -> None:
    await _fill(store, 12)
    await _tamper(
        owner_pool,
        """UPDATE events SET payload = '{"type":"thing.opened","name":"x"}'
                 WHERE position = 7""",
    )
    report = await verify(pool, batch=5)
    assert report.first_break is not None
    assert report.first_break.position == 7
    assert report.first_break.reason == (
        "hash at position 7 does not match its content: the row was edited"
    )
    assert report.checked == 6


@pytest.mark.parametrize("batch", [4, 5000])  # 4: the hole ends a range read ahead
async def test_a_deleted_row_is_named(
    store: EventStore, pool: asyncpg.Pool, batch: int, owner_pool: asyncpg.Pool
) -> None:
    await _fill(store, 12)
    await _tamper(owner_pool, "DELETE FROM events WHERE position = 4")
    report = await verify(pool, batch=batch)
    assert [(p.position, p.reason) for p in report.problems] == [
        (4, "position 4 is missing (the next stored is 5): rows deleted")
    ]


async def test_reordered_rows_are_named(
    store: EventStore, pool: asyncpg.Pool, owner_pool: asyncpg.Pool
) -> None:
    await _fill(store, 12)
    await _tamper(
        owner_pool,
        "UPDATE events SET position = -position WHERE position IN (3, 9)",
        "UPDATE events SET position = 12 + position WHERE position IN (-3, -9)",
    )
    report = await verify(pool)
    assert report.first_break is not None
    assert report.first_break.position == 3
    assert report.first_break.reason == (
        "position 3 holds the event recorded at position 9: rows were reordered"
    )


async def test_a_rewritten_chain_is_caught_by_the_checkpoint_after_it(
    store: EventStore, pool: asyncpg.Pool, ring: KeyRing, owner_pool: asyncpg.Pool
) -> None:
    """Edit a row and recompute every later hash: the chain holds on its own, but no longer
    reaches the hash signed at position 10."""
    await _fill(store, 14)
    await _sign(pool, ring)
    rows = [row_to_event(r) for r in await pool.fetch(Q["rows_between"], 1, 100)]
    rows[5] = msgspec.structs.replace(rows[5], payload=b'{"type":"thing.opened","name":"x"}')
    prev, updates = rows[4].hash, []
    for event in rows[5:]:
        prev = event_hash(prev, **_fields(event))
        updates.append((event.position, event.payload.decode(), prev))
    async with owner_pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await conn.executemany(
            "UPDATE events SET payload = $2::json, hash = $3 WHERE position = $1", updates
        )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    stored = [row_to_event(r) for r in await pool.fetch(Q["rows_between"], 1, 100)]
    assert check_chain(stored)[0].ok  # consistent on its own
    report = await verify(pool)
    assert [p.line() for p in report.problems] == [
        "position 10: the chain at position 10 differs from the checkpoint signed there: "
        "events 6..10 were rewritten (their hashes recomputed)"
    ]


async def test_a_cut_tail_is_caught_by_a_checkpoint_past_the_head(
    store: EventStore, pool: asyncpg.Pool, ring: KeyRing, owner_pool: asyncpg.Pool
) -> None:
    await _fill(store, 12)
    await _sign(pool, ring)
    await _tamper(owner_pool, "DELETE FROM events WHERE position > 8")
    report = await verify(pool)
    assert report.first_break is not None
    assert report.first_break.line() == (
        "position 9: checkpoint at position 10 is past the head 8: events 9..10 were deleted"
    )


async def test_a_forged_or_unknown_checkpoint_is_named(
    store: EventStore, pool: asyncpg.Pool, ring: KeyRing, owner_pool: asyncpg.Pool
) -> None:
    await _fill(store, 10)
    await _sign(pool, ring)
    first = await pool.fetchval("SELECT jws FROM chain_checkpoints WHERE position = 5")
    await owner_pool.execute("UPDATE chain_checkpoints SET jws = $1 WHERE position = 10", first)
    report = await verify(pool)
    assert [p.line() for p in report.problems] == [
        "position 10: checkpoint at position 10: its row differs from what was signed"
    ]
    stranger = await verify(pool, trusted_keys={})  # pinned keys that do not name the signer
    assert (stranger.problems, stranger.verdict, stranger.checkpoints) == ([], "unvouched", 0)
    assert "(positions 5..10) are signed by key" in stranger.unvouched[0]
    assert "which is not pinned" in stranger.unvouched[0]
    [key] = ring.keys
    trusted = await verify(pool, trusted_keys={key.kid: key.public_jwk})
    assert (trusted.checkpoints, trusted.keys, trusted.verdict) == (1, "pinned", "broken")


def _fields(event: RecordedEvent) -> dict[str, Any]:
    """The hashed fields of an event (everything but its hash)."""
    return {f: getattr(event, f) for f in event.__struct_fields__ if f != "hash"}
