"""`replay` of two trees on one kept database, alternating, by CPU as well as by the clock.

    .venv/bin/python bench/replay_trees.py --database NAME --tree OTHER [--rounds 2]
                                           [--database-url URL]

NAME is a database `bench/ledger_1m.py --keep` left behind. OTHER is another checkout (a
worktree at an older commit, `make install`ed), compared with this one; both must read the
database's schema and events (an older tree cannot read events written with fields it does
not know: build the database with the older tree, then migrate it with this one): each round runs
`projections.replay.replay` once with each tree's code and venv, in turn. `replay` is
idempotent (it builds beside, checks, switches), so every run folds the whole log.

Why CPU: this machine's speed wanders by half within minutes, so two runs' events/s say
little about two trees. Each run reports the CPU its own process spent (Python: decoding,
statements) and the CPU of its Postgres backend (the fold's SQL), read from /proc while the
run goes on. Equal CPU with unequal rates is the machine, not the code.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
from machine import load_average
from process_use import cpu_of
from scratch_database import add_database_url, with_database

HERE = Path(__file__).resolve().parent.parent

# Run inside the tree under test, with its own venv: prints "events seconds python_cpu".
CHILD = """
import asyncio, resource, sys
from projections.replay import replay
report = asyncio.run(replay(sys.argv[1]))
if report.differences:
    raise SystemExit(f"{len(report.differences)} differences")
used = resource.getrusage(resource.RUSAGE_SELF)
print(report.applied, report.seconds, used.ru_utime + used.ru_stime)
"""


async def _backend_cpu(admin: asyncpg.Connection, database: str, done: asyncio.Event) -> float:
    """The CPU of the replay's backend: the one client session on `database`, read from /proc
    until the run ends (its last reading before the session closed)."""
    last: dict[int, float] = {}
    while not done.is_set():
        pids = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = "
            "'client backend'",
            database,
        )
        for row in pids:
            cpu = cpu_of(row["pid"])
            if cpu is not None:
                last[row["pid"]] = cpu
        await asyncio.sleep(0.2)
    return sum(last.values())


async def one_run(admin: asyncpg.Connection, url: str, database: str, tree: Path) -> str:
    done = asyncio.Event()
    watcher = asyncio.create_task(_backend_cpu(admin, database, done))
    try:
        child = await asyncio.to_thread(
            subprocess.run,
            [str(tree / ".venv" / "bin" / "python"), "-c", CHILD, url],
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        done.set()
    if child.returncode != 0:  # e.g. an older tree that cannot read this schema's events
        tail = "\n".join(child.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"replay in {tree} failed ({child.returncode}):\n{tail}")
    backend = await watcher
    applied, seconds, python = child.stdout.split()[-3:]
    rate = int(applied) / float(seconds)
    return (
        f"{rate:>9,.0f} events/s in {float(seconds):5.1f} s; CPU: replay {float(python):5.1f} s, "
        f"its Postgres backend {backend:5.1f} s, together {float(python) + backend:5.1f} s"
    )


async def run(admin_url: str, database: str, other: Path, rounds: int) -> None:
    admin = await asyncpg.connect(admin_url)
    url = with_database(admin_url, database)
    trees = {"this tree": HERE, f"{other.name}": other}
    print(f"load at start: {load_average()}")
    try:
        for round_ in range(1, rounds + 1):
            for name, tree in trees.items():
                line = await one_run(admin, url, database, tree)
                print(f"round {round_} {name:<12} {line}", flush=True)
    finally:
        await admin.close()
    print(f"load at end: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_database_url(parser)
    parser.add_argument("--database", required=True, help="a database ledger_1m.py --keep kept")
    parser.add_argument("--tree", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not (args.tree / ".venv" / "bin" / "python").exists():
        sys.exit(f"{args.tree} has no .venv: run make install there")
    asyncio.run(run(args.database_url, args.database, args.tree.resolve(), args.rounds))


if __name__ == "__main__":
    main()
