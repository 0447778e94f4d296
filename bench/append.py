"""Append throughput and latency of the event store against plain INSERT + COMMIT.

    .venv/bin/python bench/append.py [--database-url URL] [--events N] [--seconds S]

Creates a fresh database on the server behind the admin URL (default
postgresql://postgres@127.0.0.1:5432/postgres, or AUTHLEDGER_BENCH_DATABASE_URL), migrates it
with migrations.runner.migrate, and at each concurrency (1, 16, 64) measures, one after the other:

* store: C client tasks each appending one event to a new stream through one EventStore on one
  asyncpg pool, as one service process would;
* baseline: C client tasks, each with its own asyncpg connection, each doing a single-row
  INSERT in autocommit mode (the INSERT and its COMMIT in one round trip) into a table with a
  comparable row: uuid key, text columns, json payload and metadata, timestamptz.

Both build the same event per append (a realistic payload, a fresh stream id); that counts in
the throughput of both, not in the latency, which is the append call (or the INSERT) alone.
Each measurement starts with a CHECKPOINT (unless --no-checkpoint) and a 1 s warm-up, then runs
for --seconds (or exactly --events appends). The loop is uvloop, as the service runs on.
Prints the machine, then events/s and p50/p99 latency of each, and the ratio store/baseline;
checks the log is gap-free and its hash chain holds; drops its database at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec
from machine import cpu_model, load_average, memory_total, other_sessions
from scratch_database import add_database_url, with_database

from events.catalogue import Catalogue, Event
from events.envelope import Metadata, NewEvent, StreamRef
from events.hashchain import verify_log
from events.ids import random_token
from events.store import NO_STREAM, EventStore
from migrations.runner import migrate

CONCURRENCY = (1, 16, 64)
WARMUP_SECONDS = 1.0
# Hard cap on appends per client per measurement, so a timed loop is bounded by count too.
MAX_PER_CLIENT = 1_000_000
# As service/runtime/resources.py opens it. The writer uses one connection per batch in flight (two
# by
# default), plus one briefly while the pool resets a released one; the rest is for readers.
STORE_POOL_SIZE = 10

BASELINE_DDL = """
CREATE TABLE bench_baseline (
    event_id     uuid        PRIMARY KEY,
    tenant_id    text        NOT NULL,
    stream_type  text        NOT NULL,
    stream_id    text        NOT NULL,
    type         text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    payload      json        NOT NULL,
    metadata     json        NOT NULL
)
"""
BASELINE_INSERT = """
INSERT INTO bench_baseline
    (event_id, tenant_id, stream_type, stream_id, type, occurred_at, payload, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""


class CredentialIssued(Event, frozen=True, kw_only=True, tag="bench.credential_issued"):
    """A payload of realistic size (about 200 bytes of JSON)."""

    credential_id: str
    agent_id: str
    scopes: list[str]
    expires_at: datetime


BENCH = Catalogue(CredentialIssued)
_encode = msgspec.json.Encoder().encode


def new_event() -> tuple[StreamRef, NewEvent]:
    """One event for a new stream (every append goes to a distinct stream)."""
    now = datetime.now(UTC)
    stream = StreamRef("bench", "credential", random_token("cred_", 12))
    event = BENCH.new(
        CredentialIssued(
            credential_id=stream.stream_id,
            agent_id=random_token("agt_", 12),
            scopes=["tokens:issue", "tokens:revoke", "profile:read"],
            expires_at=now,
        ),
        occurred_at=now,
        metadata=Metadata(correlation_id=random_token("req_", 9), actor="bench"),
    )
    return stream, event


# -- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    events: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        return ordered[index]


# (client index, what new_event made) -> one timed append
AppendOne = Callable[[int, tuple[StreamRef, NewEvent]], Awaitable[None]]


async def _drive(
    append_one: AppendOne, concurrency: int, *, seconds: float | None, events: int | None
) -> Result:
    """`concurrency` clients calling `append_one` until the deadline or the count is reached."""
    if events is not None:
        quotas = [
            events // concurrency + (1 if i < events % concurrency else 0)
            for i in range(concurrency)
        ]
    else:
        quotas = [MAX_PER_CLIENT] * concurrency
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else float("inf")

    async def client(index: int) -> None:
        own = latencies[index]
        for _ in range(quotas[index]):
            if time.perf_counter() >= deadline:
                return
            item = new_event()
            began = time.perf_counter_ns()
            await append_one(index, item)
            own.append((time.perf_counter_ns() - began) / 1e6)

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    merged = [x for own in latencies for x in own]
    return Result(len(merged), elapsed, merged)


async def measure(
    append_one: AppendOne, concurrency: int, *, seconds: float, events: int | None
) -> Result:
    await _drive(append_one, concurrency, seconds=WARMUP_SECONDS, events=None)
    if events is not None:
        return await _drive(append_one, concurrency, seconds=None, events=events)
    return await _drive(append_one, concurrency, seconds=seconds, events=None)


async def bench_store(
    store: EventStore, concurrency: int, *, seconds: float, events: int | None
) -> Result:
    async def append_one(_: int, item: tuple[StreamRef, NewEvent]) -> None:
        stream, event = item
        await store.append(stream, NO_STREAM, [event])

    return await measure(append_one, concurrency, seconds=seconds, events=events)


async def bench_baseline(
    url: str, concurrency: int, *, seconds: float, events: int | None
) -> Result:
    conns = [await asyncpg.connect(url) for _ in range(concurrency)]
    try:

        async def append_one(index: int, item: tuple[StreamRef, NewEvent]) -> None:
            stream, event = item
            await conns[index].execute(
                BASELINE_INSERT,
                event.event_id,
                stream.tenant_id,
                stream.stream_type,
                stream.stream_id,
                event.type,
                event.occurred_at,
                event.payload.decode(),
                _encode(event.metadata).decode(),
            )

        return await measure(append_one, concurrency, seconds=seconds, events=events)
    finally:
        for conn in conns:
            await conn.close()


# -- the machine -----------------------------------------------------------------------------


async def describe(conn: asyncpg.Connection, loop_name: str) -> list[tuple[str, str]]:
    names = (
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "commit_delay",
        "shared_buffers",
    )
    settings = {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
    return [
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("cpu", cpu_model()),
        ("memory", memory_total()),
        ("os", platform.platform()),
        ("postgres", settings["server_version"]),
        ("fsync", settings["fsync"]),
        ("synchronous_commit", settings["synchronous_commit"]),
        ("wal_sync_method", settings["wal_sync_method"]),
        ("commit_delay", settings["commit_delay"]),
        ("shared_buffers", settings["shared_buffers"]),
        ("python", f"{platform.python_version()}, asyncpg {asyncpg.__version__}, {loop_name}"),
        ("load average at start", load_average()),
        ("other client sessions at start", str(await other_sessions(conn))),
    ]


# -- the run ---------------------------------------------------------------------------------


class Checkpoints:
    """CHECKPOINT before each measurement, so each starts with no dirty buffers left by the one
    before (the store writes twice the rows of the baseline; whichever goes second would
    otherwise pay for the other's writes). Off with --no-checkpoint, or without the right."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.note = "before each measurement" if enabled else "off (--no-checkpoint)"

    async def __call__(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        if not self.enabled:
            return
        try:
            await conn.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            self.enabled = False
            self.note = "off (the role may not CHECKPOINT)"


async def run(
    admin_url: str, *, seconds: float, events: int | None, loop_name: str, checkpoint: bool
) -> None:
    name = f"authledger_bench_{uuid.uuid4().hex[:12]}"
    url = with_database(admin_url, name)
    admin = await asyncpg.connect(admin_url)
    try:
        machine = await describe(admin, loop_name)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            await _run_in(url, machine, seconds=seconds, events=events, checkpoint=checkpoint)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(
            f"at the end: load average {load_average()}, "
            f"other client sessions {await other_sessions(admin)}"
        )
    finally:
        await admin.close()


async def _run_in(
    url: str,
    machine: list[tuple[str, str]],
    *,
    seconds: float,
    events: int | None,
    checkpoint: bool,
) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await conn.execute(BASELINE_DDL)
    finally:
        await conn.close()

    width = max(len(k) for k, _ in machine)
    print("machine")
    for key, value in machine:
        print(f"  {key:<{width}}  {value}")
    measure_what = f"{events} appends" if events is not None else f"{seconds:g} s"
    print(
        f"each measurement: {WARMUP_SECONDS:g} s warm-up, then {measure_what}; "
        f"store: one EventStore, pool max_size={STORE_POOL_SIZE}; "
        f"baseline: one connection per client\n"
    )

    rows: list[tuple[int, Result, Result]] = []
    settle = Checkpoints(checkpoint)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=STORE_POOL_SIZE)
    store = EventStore(pool)
    try:
        for concurrency in CONCURRENCY:
            await settle(pool)
            stored = await bench_store(store, concurrency, seconds=seconds, events=events)
            await settle(pool)
            base = await bench_baseline(url, concurrency, seconds=seconds, events=events)
            rows.append((concurrency, stored, base))
            print(
                f"  c={concurrency:<3} store {stored.rate:8.0f}/s ({stored.events} appends)   "
                f"baseline {base.rate:8.0f}/s ({base.events} inserts)",
                file=sys.stderr,
                flush=True,
            )
        total = await pool.fetchval("SELECT count(*) FROM events")
        head = await store.head_position()
        report = await verify_log(store.read_all)
    finally:
        await store.close()
        await pool.close()

    print(
        "| concurrency | store events/s | store p50 ms | store p99 ms "
        "| baseline events/s | baseline p50 ms | baseline p99 ms | store/baseline |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for concurrency, s, b in rows:
        ratio = s.rate / b.rate if b.rate else float("nan")
        print(
            f"| {concurrency} | {s.rate:,.0f} | {s.percentile(0.50):.2f} "
            f"| {s.percentile(0.99):.2f} | {b.rate:,.0f} | {b.percentile(0.50):.2f} "
            f"| {b.percentile(0.99):.2f} | {ratio:.2f}x |"
        )
    print()
    print(f"checkpoints: {settle.note}")
    gap_free = total == head
    print(
        f"log: {total} events, head position {head}, gap-free: {gap_free}, "
        f"hash chain verifies: {report.ok} ({report.checked} checked)"
    )
    if not (gap_free and report.ok):
        raise SystemExit("the benchmark left a broken log")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_database_url(parser)
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="appends per measurement (instead of a fixed duration)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="duration of each measurement after warm-up (default %(default)s)",
    )
    parser.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="do not CHECKPOINT before each measurement (a brief I/O burst on the server)",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop (default: uvloop, which the service runs on; see "
        "service.runtime.processes.event_loop_factory)",
    )
    args = parser.parse_args(argv)
    if args.events is not None and not max(CONCURRENCY) <= args.events <= 5_000_000:
        parser.error(f"--events must be in [{max(CONCURRENCY)}, 5000000]")
    if args.seconds <= 0 or args.seconds > 60:
        parser.error("--seconds must be in (0, 60]")

    loop_factory = None
    if args.loop == "uvloop":  # as service.runtime.processes.event_loop_factory picks it
        import uvloop

        loop_factory = uvloop.Loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(
            run(
                args.database_url,
                seconds=args.seconds,
                events=args.events,
                loop_name=args.loop,
                checkpoint=not args.no_checkpoint,
            )
        )


if __name__ == "__main__":
    main()
