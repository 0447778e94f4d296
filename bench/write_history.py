"""Does history slow writes? Registrations on an empty log beside one holding 1,000,000 events.

    .venv/bin/python bench/write_history.py [--events N] [--seconds S] [--rounds R]
                                            [--database-url URL]

Two fresh databases on the server behind the admin URL (default
postgresql://postgres@127.0.0.1:5432/postgres, or AUTHLEDGER_BENCH_DATABASE_URL), both
migrated. Into the second, a generated history of --events (1,000,000) events is COPYed
(bench/ledger_history.py, the one bench/ledger_1m.py loads: registrations, claims, provider
credentials, revocations, expiries over ~400,000 streams, hashed by the writer's own code),
its read models folded and a chain checkpoint signed every 1,000 events, and the relay's and
the revocation feed's checkpoints set at the head (the history counts as published; JetStream
is not the subject).

Then, --rounds (2) times, on the empty log and then on the long one: `authledger serve
--workers 2` plus `authledger worker` as bench/write_path.py runs them (a login member of the
runtime role, default logs, rate limits off), left to settle until the log stops growing (the
worker records the deadlines the history left open), and anonymous registrations at 16
connections for --seconds (10) after a warm-up, every 200 checked in the log. Prints each
run and the issue's target: registrations/s on the long log >= 0.9x the empty log's, each
side's best round. Drops both databases and streams at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from console import log
from ledger_1m import fold_and_sign, load
from machine import load_average, other_sessions
from registrations import Log
from scratch_database import add_database_url, with_database
from served import Server, free_port
from smtp_sink import SmtpSink
from write_path import (
    Bench,
    Stack,
    drop_stream,
    runtime_login,
    stack_env,
    start_worker,
    stop_worker,
)
from wrk_runs import Wrk

TARGET = 0.9  # registrations/s with the history against the empty log
QUIET_SECONDS = 3.0  # the log has not grown for this long: the worker has caught up
SETTLE_TIMEOUT = 300.0
# bench/ledger_1m.py's fold_and_sign wraps its checkpoint signing key under this secret: both
# stacks run with it, so the long log's worker can sign on
HISTORY_SECRET = "bench-secret-" + "k" * 40


async def prepare(admin: asyncpg.Connection, admin_url: str, name: str, events: int) -> str:
    """A migrated database, with `events` of history folded, signed and published."""
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    started = time.monotonic()
    loaded = await load(url, events) if events else 0
    if loaded:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            folded, signing, signed = await fold_and_sign(url, pool)
        finally:
            await pool.close()
        conn = await asyncpg.connect(url)
        try:
            head = await conn.fetchval("SELECT max(position) FROM events")
            # The history counts as published, by the relay and by the revocation feed
            # (workers/revocation_feed.py's (C, S) pair: every ending event up to C, none of a
            # later position in the new stream), or the feed publishes the history's
            # revocations during the first run on this log.
            stream = f"BENCH_WRITE_{name[-12:]}"
            await conn.executemany(
                "INSERT INTO checkpoints (name, position, updated_at) VALUES ($1, $2, now())",
                [(f"relay:{stream}", head), (f"revocations:{stream}", head),
                 (f"revocations:{stream}:seq", 0)],
            )  # fmt: skip
        finally:
            await conn.close()
        log(
            f"{name}: {loaded:,} events loaded, folded in {folded:.0f} s, {signed:,} "
            f"checkpoints signed in {signing:.0f} s ({time.monotonic() - started:.0f} s in all)"
        )
    else:
        conn = await asyncpg.connect(url)
        try:
            from migrations.runner import migrate

            await migrate(conn)
        finally:
            await conn.close()
    return url


async def settle(events: Log) -> int:
    """Wait until the log has not grown for QUIET_SECONDS; the head then."""
    head, quiet_since, started = await events.head(), time.monotonic(), time.monotonic()
    while time.monotonic() - quiet_since < QUIET_SECONDS:
        if time.monotonic() - started > SETTLE_TIMEOUT:
            raise RuntimeError(f"the log still grows after {SETTLE_TIMEOUT:.0f} s")
        await asyncio.sleep(0.5)
        now = await events.head()
        if now != head:
            head, quiet_since = now, time.monotonic()
    return head


async def measure(
    admin: asyncpg.Connection, url: str, name: str, smtp_port: int, args: argparse.Namespace
) -> tuple[float, bool]:
    """One round on one database: registrations/s at c=16, and whether every 200 committed."""
    env = stack_env(url, name[-12:], smtp_port)
    env["AUTHLEDGER_DATABASE_URL"] = await runtime_login(admin, url)
    env["AUTHLEDGER_SECRET_KEY"] = HISTORY_SECRET
    workdir = Path(tempfile.mkdtemp(prefix="authledger-bench-history-"))
    worker = start_worker(env, workdir / "worker.log")
    server = Server(env, free_port(), workdir / "serve.log", 2)
    server.start()
    conn = await asyncpg.connect(url)
    try:
        await server.wait_ready()
        events = Log(conn)
        settled = await settle(events)
        bench = Bench(Stack(server, worker, env), Wrk(server, workdir, 2), events, args.seconds)
        await bench.wrk.run("warm-up", "register.lua", "/agent/auth", connections=16, seconds=2)
        run, committed = await bench.run_registrations("register.lua", 16)
        log(f"  {name}: head {settled:,} before the run; logs in {workdir}")
        return run.rate, committed.holds
    finally:
        await conn.close()
        server.stop()
        await asyncio.to_thread(stop_worker, worker)


async def run(args: argparse.Namespace) -> int:
    admin = await asyncpg.connect(args.database_url)
    smtp = SmtpSink()
    smtp.start()
    suffix = secrets.token_hex(4)
    names = {
        "empty": f"authledger_bench_hist_empty_{suffix}",
        "long": f"authledger_bench_hist_{suffix}",
    }
    try:
        urls = {
            "empty": await prepare(admin, args.database_url, names["empty"], 0),
            "long": await prepare(admin, args.database_url, names["long"], args.events),
        }
        rates: dict[str, list[float]] = {"empty": [], "long": []}
        committed = True
        for round_ in range(1, args.rounds + 1):
            for side in ("empty", "long"):
                log(f"round {round_}: {side} log")
                rate, holds = await measure(admin, urls[side], names[side], smtp.port, args)
                rates[side].append(rate)
                committed = committed and holds
        print(
            f"\nload average {load_average()}; other client sessions {await other_sessions(admin)}"
        )
        print("\n| log | registrations/s at c=16, each round | best |")
        print("|---|---|---:|")
        for side, label in (("empty", "empty"), ("long", f"{args.events:,} events")):
            each = " · ".join(f"{r:,.0f}" for r in rates[side])
            print(f"| {label} | {each} | {max(rates[side]):,.0f} |")
        ratio = max(rates["long"]) / max(rates["empty"])
        met = ratio >= TARGET
        print("\ntargets (issue 11):")
        print(f"  {'met ' if met else 'MISS'}  long log >= 0.9x the empty one: {ratio:.3f}x")
        print(f"  {'met ' if committed else 'MISS'}  every 200 committed")
        return 0 if committed else 1
    finally:
        smtp.stop()
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await drop_stream(f"BENCH_WRITE_{name[-12:]}")
        await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_database_url(parser)
    parser.add_argument("--events", type=int, default=1_000_000, help="events of history")
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured run")
    parser.add_argument("--rounds", type=int, default=2, help="runs on each log, alternating")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
