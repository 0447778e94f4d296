"""Audit and replay at scale: a realistic log of 1,000,000 events, then three figures.

    .venv/bin/python bench/ledger_1m.py [--database-url URL] [--events N] [--samples N] [--keep]

Creates a fresh database on the server behind the admin URL (default
postgresql://postgres@127.0.0.1:5432/postgres, or AUTHLEDGER_BENCH_DATABASE_URL), migrates it,
and loads a generated history (bench/ledger_history.py: registrations, claims, provider
credentials, revocations, expiries over ~400,000 streams, hashed by the writer's own code)
with COPY; folds the read models (projections.runner.rebuild) and signs a checkpoint every
1,000 events (workers.checkpoints, which checks the chain as it goes). Then measures:

* rebuild: `projections.replay.replay(database_url)` (blue/green: build beside, checksum,
  switch), events/s as it reports them; target >= 20,000/s;
* as-of: `service.audit.as_of.state` for one credential (resolve + read + fold) at a random
  instant of its life, over --samples random credentials, one after the other; p50/p99/max;
  target p99 < 50 ms;
* verify: `service.audit.verify.verify` over the whole log and its checkpoints, events/s;
  target >= 100,000/s.

Prints the machine and its load at the start and the end (the figures are only worth
quoting from a quiet machine), then the figures with their targets; drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from ledger_history import COLUMNS, TENANT, history, row
from machine import cpu_model, load_average, memory_total, other_sessions
from scratch_database import add_database_url, with_database

from migrations.runner import migrate
from projections.replay import replay
from projections.runner import rebuild
from service.audit.as_of import state
from service.audit.subjects import Bound, resolve
from service.audit.verify import verify
from service.crypto.signing import KeyRing
from workers.checkpoints import CheckpointConfig, CheckpointWorker

COPY_BATCH = 50_000
TARGETS = {"rebuild": 20_000, "as_of_p99_ms": 50, "verify": 100_000}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(url: str, count: int) -> int:
    """Generate and COPY the history; returns the number of events."""
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        batch: list[tuple[object, ...]] = []
        total = 0
        for event in history(count):
            batch.append(row(event))
            if len(batch) == COPY_BATCH:
                await conn.copy_records_to_table("events", records=batch, columns=COLUMNS)
                total += len(batch)
                batch = []
                print(f"  loaded {total:,}", file=sys.stderr, flush=True)
        if batch:
            await conn.copy_records_to_table("events", records=batch, columns=COLUMNS)
            total += len(batch)
        await conn.execute("VACUUM ANALYZE events")
        return total
    finally:
        await conn.close()


async def fold_and_sign(url: str, pool: asyncpg.Pool) -> tuple[float, float, int]:
    """The read models folded, then a checkpoint every 1,000 events: seconds of each."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await rebuild(conn)
        folded = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    ring = KeyRing("bench-secret-" + "k" * 40)
    started = time.perf_counter()
    signed = await CheckpointWorker(pool, ring, config=CheckpointConfig(every=1000)).run_once()
    return folded, time.perf_counter() - started, len(signed)


async def as_of_latencies(pool: asyncpg.Pool, samples: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    rows = await pool.fetch(
        "SELECT credential_id, issued_at FROM credentials ORDER BY md5(credential_id) LIMIT $1",
        samples,
    )
    latencies: list[float] = []
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        for credential_id, issued_at in rows:
            instant = issued_at + timedelta(seconds=rng.uniform(-600, 2 * 86_400))
            started = time.perf_counter()
            subject = await resolve(conn, TENANT, "credential", credential_id)
            answer = await state(conn, subject, Bound(at=instant), now=now)
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer["credential"] is None or answer["credential"]["credential_id"]
    return latencies


async def run(admin_url: str, count: int, samples: int, keep: bool) -> None:
    name = f"authledger_bench_ledger_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    print("machine")
    for key, value in (
        ("nproc", str(os.cpu_count())),
        ("cpu", cpu_model()),
        ("memory", memory_total()),
        ("python", f"{platform.python_version()}, asyncpg {asyncpg.__version__}, uvloop"),
        ("postgres", str(await admin.fetchval("SHOW server_version"))),
        ("load at start", load_average()),
        ("other sessions at start", str(await other_sessions(admin))),
    ):
        print(f"  {key:<24} {value}")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        started = time.perf_counter()
        total = await load(url, count)
        print(f"loaded {total:,} events in {time.perf_counter() - started:.0f} s")
        pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
        try:
            folded, signing, signed = await fold_and_sign(url, pool)
            print(
                f"read models folded in {folded:.0f} s ({total / folded:,.0f} events/s, one "
                f"transaction); {signed:,} checkpoints signed in {signing:.1f} s"
            )
            rebuilt = await replay(url)
            print(
                f"rebuild: {rebuilt.applied:,} events in {rebuilt.seconds:.1f} s = "
                f"{rebuilt.rate:,.0f} events/s (target >= {TARGETS['rebuild']:,}); "
                f"{len(rebuilt.differences)} differences"
            )
            latencies = await as_of_latencies(pool, samples, seed=11)
            p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
            print(
                f"as-of, one credential: {len(latencies)} samples, p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms, max {max(latencies):.1f} ms "
                f"(target p99 < {TARGETS['as_of_p99_ms']} ms)"
            )
            for attempt in (1, 2):
                report = await verify(pool)
                print(
                    f"verify (run {attempt}): {report.checked:,} events, "
                    f"{report.checkpoints:,} checkpoints in {report.seconds:.1f} s = "
                    f"{report.rate:,.0f} events/s (target >= {TARGETS['verify']:,}); "
                    f"ok: {report.ok}"
                )
            print(f"  {'load at end':<24} {load_average()}")
            print(f"  {'other sessions at end':<24} {await other_sessions(admin)}")
        finally:
            await pool.close()
    finally:
        if not keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept database {name}")
        await admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_database_url(parser)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate")
    parser.add_argument("--samples", type=int, default=1000, help="credentials for as-of")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if not 1000 <= args.events <= 10_000_000 or not 1 <= args.samples <= 100_000:
        parser.error("--events in [1000, 10000000], --samples in [1, 100000]")
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.Loop) as runner:
        runner.run(run(args.database_url, args.events, args.samples, args.keep))


if __name__ == "__main__":
    main()
