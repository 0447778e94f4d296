"""Expiry lateness: how long after its deadline the expiry worker records each expiry.

    .venv/bin/python bench/expiry.py [--database-url URL] [--deadlines N] [--window S]
                                     [--lead S] [--workers K] [--no-catch-up]

Creates a fresh database on the server behind the admin URL (default
postgresql://postgres@127.0.0.1:5432/postgres, or AUTHLEDGER_BENCH_DATABASE_URL), migrates it
with migrations.runner.migrate, and writes N pending deadlines (default 10,000) through the event
store with the inline projections, as the commands would leave them:

* half: anonymous registrations holding a pre-claim key (`registration.created` and
  `credential.issued`, the same `expires_at`): expiry records `registration.expired` and
  `credential.revoked` in one append;
* a quarter: email registrations with a live claim attempt whose link window ends at the
  deadline (the registration a day later): `claim.attempt_expired`;
* a quarter: access tokens: `credential.expired`.

The deadlines are spread uniformly at random over a window of S seconds (default 10) that opens
`--lead` seconds (default 20) after the script starts writing them; the writing must end before
the window opens. Then K expiry workers (default 1; each with a pool and an event store of its
own, as separate processes would have) start on the real clock, look, and sleep until the first
deadline; they log as in production (JSON at info level), into a temporary file. The lateness
of each expiry is the event's recorded-at minus its deadline (which the event carries as
occurred-at; checked against the deadline written). The script prints p50/p90/p99/max, checks
that every deadline was recorded exactly once, and, unless --no-catch-up, measures a catch-up:
N more deadlines all passed before a worker starts (as after downtime), and the time until
every one is recorded. The loop is uvloop, as the service runs on. The database is dropped at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
from machine import cpu_model, load_average, memory_total, other_sessions
from scratch_database import add_database_url, with_database

from events.catalogue import Event
from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialIssued
from events.envelope import Metadata, StreamRef
from events.ledger import LEDGER
from events.registration import STREAM_TYPE as REGISTRATION
from events.registration import ClaimAttemptStarted, RegistrationCreated
from events.store import NO_STREAM, EventStore, StreamAppend
from migrations.runner import migrate
from projections.runner import project
from service.observability.logging import configure_logging
from service.settings import Settings
from workers.expiry import ACTOR, ExpiryWorker

POOL_SIZE = 10  # as service/runtime/resources.py opens it
WRITERS = 64  # concurrent appends while writing the deadlines
TENANT = "default"
DEADLINE_TYPES = ("registration.expired", "claim.attempt_expired", "credential.expired")
FETCH_LATENESS = """
SELECT stream_id, type, occurred_at, recorded_at FROM events
WHERE metadata->>'actor' = $1 AND type = ANY($2::text[])
"""
_random = random.Random()  # spreading deadlines, not secrets


def _hex() -> str:
    return secrets.token_hex(32)


def _id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(16)


def item(n: int, deadline: datetime) -> tuple[list[StreamAppend], str]:
    """The appends of the n-th pending deadline, and the stream its deadline event lands on."""
    meta = Metadata(actor="bench")

    def part(stream_type: str, stream_id: str, *events: Event) -> StreamAppend:
        new = [
            LEDGER.new(e, occurred_at=deadline - timedelta(days=1), metadata=meta) for e in events
        ]
        return StreamAppend(StreamRef(TENANT, stream_type, stream_id), NO_STREAM, new)

    kind = n % 4
    if kind in (0, 1):  # an anonymous registration and its key
        rid, cid = _id("reg_"), _id("cred_")
        created = RegistrationCreated(
            registration_id=rid,
            kind="anonymous",
            requested_credential_type="api_key",
            claim_token_hash=_hex(),
            expires_at=deadline,
            pre_claim_scopes=("api.read",),
            post_claim_scopes=("api.read", "api.write"),
            credential_id=cid,
        )
        key = CredentialIssued(
            credential_id=cid,
            kind="api_key",
            token_hash=_hex(),
            scopes=("api.read",),
            issued_via="anonymous",
            registration_id=rid,
            expires_at=deadline,
        )
        return [part(REGISTRATION, rid, created), part(CREDENTIAL, cid, key)], rid
    if kind == 2:  # an email registration whose claim link ends at the deadline
        rid = _id("reg_")
        created = RegistrationCreated(
            registration_id=rid,
            kind="verified_email",
            requested_credential_type="api_key",
            claim_token_hash=_hex(),
            expires_at=deadline + timedelta(days=1),
            pre_claim_scopes=(),
            post_claim_scopes=("api.read", "api.write"),
        )
        started = ClaimAttemptStarted(
            attempt_id=_id("cla_"),
            attempt_token_hash=_hex(),
            email_sealed="pii1.bench",
            email_index=_hex(),
            link_expires_at=deadline,
        )
        return [part(REGISTRATION, rid, created, started)], rid
    cid = _id("cred_")  # an access token
    token = CredentialIssued(
        credential_id=cid,
        kind="access_token",
        token_hash=_hex(),
        scopes=("api.read",),
        issued_via="id_jag",
        expires_at=deadline,
    )
    return [part(CREDENTIAL, cid, token)], cid


async def write_deadlines(store: EventStore, deadlines: list[datetime]) -> dict[str, datetime]:
    """Append every item, WRITERS at a time; the deadline of each item's expiry stream."""
    queue = list(enumerate(deadlines))
    expected: dict[str, datetime] = {}

    async def writer() -> None:
        while queue:
            n, deadline = queue.pop()
            parts, stream_id = item(n, deadline)
            await store.append_many(parts, projector=project)
            expected[stream_id] = deadline

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    return expected


def percentile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[index]


async def until_recorded(workers: list[ExpiryWorker], count: int, within: float) -> float:
    """Seconds until the workers have recorded `count` deadline events between them."""
    began = time.perf_counter()
    while sum(w.stats.recorded[t] for w in workers for t in DEADLINE_TYPES) < count:
        if time.perf_counter() - began > within:
            raise SystemExit(f"not every deadline was recorded within {within:g} s")
        await asyncio.sleep(0.01)  # the stats live in memory; lateness comes from the log
    return time.perf_counter() - began


async def recorded(pool: asyncpg.Pool, expected: dict[str, datetime]) -> list[float]:
    """Lateness (s) of every deadline event, after checking each was recorded once, dated
    at the deadline written."""
    rows = await pool.fetch(FETCH_LATENESS, ACTOR, list(DEADLINE_TYPES))
    mine = [r for r in rows if r["stream_id"] in expected]
    seen = Counter(r["stream_id"] for r in mine)
    if len(seen) != len(expected) or max(seen.values()) != 1:
        raise SystemExit(f"{len(seen)} of {len(expected)} deadlines recorded, some twice?")
    if any(r["occurred_at"] != expected[r["stream_id"]] for r in mine):
        raise SystemExit("an expiry is not dated at its deadline")
    return sorted((r["recorded_at"] - r["occurred_at"]).total_seconds() for r in mine)


def show(label: str, lateness: list[float]) -> None:
    ms = [x * 1000 for x in lateness]
    print(
        f"| {label} | {len(ms):,} | {percentile(ms, 0.5):.1f} | {percentile(ms, 0.9):.1f} "
        f"| {percentile(ms, 0.99):.1f} | {ms[-1]:.1f} | {min(ms):.1f} |"
    )


async def measure(
    pools: list[asyncpg.Pool], pool: asyncpg.Pool, expected: dict[str, datetime], within: float
) -> tuple[list[float], float, list[ExpiryWorker]]:
    """Start a worker per pool, wait until every expected deadline is recorded, stop them."""
    workers = [ExpiryWorker(p) for p in pools]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        took = await until_recorded(workers, len(expected), within)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return await recorded(pool, expected), took, workers


async def _run_in(url: str, args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE)
    store = EventStore(pool)
    pools = [
        await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE) for _ in range(args.workers)
    ]
    try:
        began = datetime.now(UTC)
        opens = began + timedelta(seconds=args.lead)
        spread = [
            opens + timedelta(seconds=_random.uniform(0, args.window))
            for _ in range(args.deadlines)
        ]
        expected = await write_deadlines(store, spread)
        written = datetime.now(UTC)
        print(
            f"wrote {len(expected):,} pending deadlines in "
            f"{(written - began).total_seconds():.1f} s"
        )
        if written >= opens:
            raise SystemExit("writing outlasted --lead: the window opened before the workers")
        await pool.execute("ANALYZE")
        timeout = (opens - written).total_seconds() + args.window + 60
        lateness, _, workers = await measure(pools, pool, expected, timeout)
        rounds = sum(w.stats.rounds for w in workers)
        conflicts = sum(w.stats.conflicts for w in workers)
        print(
            f"workers: {args.workers}; rounds that recorded something: {rounds}; "
            f"conflicts: {conflicts}\n"
        )
        print("| run | deadlines | p50 ms | p90 ms | p99 ms | max ms | min ms |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        show(f"{args.window:g} s window", lateness)
        if args.no_catch_up:
            return
        now = datetime.now(UTC)
        past = [now - timedelta(seconds=_random.uniform(1, 3600)) for _ in range(args.deadlines)]
        overdue = await write_deadlines(store, past)
        await pool.execute("ANALYZE")
        _, took, _ = await measure(pools, pool, overdue, 600)
        print(
            f"\ncatch-up: {len(overdue):,} deadlines up to an hour overdue, all recorded "
            f"{took:.2f} s after the workers started ({len(overdue) / took:,.0f}/s)"
        )
    finally:
        await store.close()
        for p in (pool, *pools):
            await p.close()


async def run(admin_url: str, args: argparse.Namespace) -> None:
    name = f"authledger_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        print("machine")
        version = await admin.fetchval("SHOW server_version")
        for key, value in (
            ("nproc", str(len(os.sched_getaffinity(0)))),
            ("cpu", cpu_model()),
            ("memory", memory_total()),
            ("os", platform.platform()),
            ("postgres", str(version)),
            ("python", f"{platform.python_version()}, asyncpg {asyncpg.__version__}, uvloop"),
            ("load average at start", load_average()),
            ("other client sessions at start", str(await other_sessions(admin))),
        ):
            print(f"  {key:<31} {value}")
        print(
            f"{args.deadlines:,} deadlines over {args.window:g} s, opening {args.lead:g} s "
            f"after the writing starts; {args.workers} worker(s)\n"
        )
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            await _run_in(with_database(admin_url, name), args)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(
            f"\nat the end: load average {load_average()}, "
            f"other client sessions {await other_sessions(admin)}"
        )
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_database_url(parser)
    parser.add_argument("--deadlines", type=int, default=10_000, help="pending deadlines")
    parser.add_argument("--window", type=float, default=10.0, help="seconds they spread over")
    parser.add_argument(
        "--lead", type=float, default=20.0, help="seconds from writing's start to the window"
    )
    parser.add_argument("--workers", type=int, default=1, help="expiry workers at once")
    parser.add_argument("--no-catch-up", action="store_true", help="skip the catch-up run")
    args = parser.parse_args(argv)
    if args.deadlines < 1 or args.window <= 0 or args.lead <= 0 or args.workers < 1:
        parser.error("--deadlines, --window, --lead and --workers must be positive")

    import uvloop  # as service.runtime.processes.event_loop_factory picks it

    # The workers log as in production (JSON at info), into a file rather than over the figures.
    fd, path = tempfile.mkstemp(prefix="expiry-bench-", suffix=".log")
    with open(fd, "w", encoding="utf-8") as out:
        configure_logging(Settings("", "", log_format="json", log_level="info"), stream=out)
        with asyncio.Runner(loop_factory=uvloop.Loop) as runner:
            runner.run(run(args.database_url, args))
    print(f"worker logs: {path}")


if __name__ == "__main__":
    main()
