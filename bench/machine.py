"""What the benchmarks print about the machine they ran on, and the commit they measured."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import asyncpg

CODE = ("events", "projections", "service", "workers", "migrations")  # what the server runs


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


async def other_sessions(conn: asyncpg.Connection) -> int:
    """Client sessions on the database server besides ours: a run with others is not clean."""
    value = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    return int(value)


def wrk_version() -> str:
    try:
        done = subprocess.run(
            ["wrk", "--version"],  # noqa: S607 - wrk from PATH, as the runs use it
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout + done.stderr).strip().splitlines()[0].split(" [")[0]


def measured_commit() -> str:
    """The commit measured, and whether the service's code differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 - a fixed command line
            ["git", "status", "--porcelain", "--", *CODE],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = sorted({line[3:] for line in dirty if line.strip()})
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


async def describe(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    version = str(await conn.fetchval("SHOW server_version"))
    sync = str(await conn.fetchval("SHOW synchronous_commit"))
    return [
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("cpu", cpu_model()),
        ("memory", memory_total()),
        ("os", platform.platform()),
        ("postgres", f"{version}, same host, TCP on 127.0.0.1, synchronous_commit {sync}"),
        ("python", platform.python_version()),
        ("wrk", wrk_version()),
        ("commit", measured_commit()),
        ("load average at start", load_average()),
        ("other client sessions at start", str(await other_sessions(conn))),
    ]


def print_lines(machine: list[tuple[str, str]]) -> None:
    """The machine's lines (as `describe` and a bench's end add them), aligned."""
    print()
    print("machine")
    width = max(len(k) for k, _ in machine)
    for key, value in machine:
        print(f"  {key:<{width}}  {value}")
