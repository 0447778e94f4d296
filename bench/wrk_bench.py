"""The frame of a wrk bench against `authledger serve` (bench/http_load.py, bench/id_jag.py).

Its command line (`--database-url`, `--quick`, `--workers`); a database of its own on the
server behind the admin URL, migrated, with `authledger serve --workers N` started on a free
loopback port and ready; and the end of the run: the server stopped (SIGTERM), the error lines
of its log shown, the database dropped, also on failure, and the work folder (the server's log,
wrk's reports) kept only when something went wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
from console import log
from machine import describe, load_average, other_sessions
from scratch_database import add_database_url, with_database
from served import Server, free_port, migrate, server_env

WORKERS = 2


def arguments(description: str | None) -> argparse.ArgumentParser:
    """The options every wrk bench takes; a bench adds its own."""
    parser = argparse.ArgumentParser(description=description)
    add_database_url(parser)
    parser.add_argument(
        "--quick", action="store_true", help="5 s per wrk run instead of 10, 1 s warm-ups"
    )
    parser.add_argument(
        "--workers", type=int, default=WORKERS, help="HTTP processes (default %(default)s)"
    )
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be in [1, 16]")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")


def run_seconds(quick: bool) -> tuple[float, float]:
    """How long each measured run and each warm-up lasts."""
    return (5.0, 1.0) if quick else (10.0, 2.0)


def _raise_on_sigterm(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_to_end(bench: Coroutine[Any, Any, int]) -> int:
    """Run the bench; SIGTERM and Ctrl-C end it through its clean-up (server, database)."""
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        return asyncio.run(bench)
    except KeyboardInterrupt:
        log("interrupted")
        return 130


@dataclass
class Served:
    """A bench's server, its database (`conn`), its work folder and the machine's lines."""

    server: Server
    env: dict[str, str]
    conn: asyncpg.Connection
    admin: asyncpg.Connection
    workdir: Path
    machine: list[tuple[str, str]]
    started: float
    keep_workdir: bool = True

    async def stop(self) -> list[str]:
        """Stop the server; the error lines of its log. Adds the machine's end-of-run lines."""
        self.server.stop()
        problems = self.server.log_problems()
        self.machine.append(("load average at end", load_average()))
        self.machine.append(("other client sessions at end", str(await other_sessions(self.admin))))
        return problems

    def verdict(self, ok: bool, problems: list[str]) -> int:
        """Print how the run ended; the exit status (0: the targets' checks held, no errors)."""
        print(f"whole run: {time.monotonic() - self.started:.0f} s")
        print(
            f"server stopped with status {self.server.stop_status}; "
            f"{len(problems)} error lines in its log"
        )
        for line in problems[:10]:
            print("  " + line[:300])
        self.keep_workdir = bool(problems) or not ok
        return 0 if ok and not problems else 1


@asynccontextmanager
async def served(
    admin_url: str, label: str, workers: int, *, kept: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[Served]:
    """A fresh database `authledger_bench_<label>_…` and a ready server on it (with `env` on
    top of served.server_env); `kept` says what the work folder holds when it is kept."""
    started = time.monotonic()
    name = f"authledger_bench_{label}_{secrets.token_hex(6)}"
    url = with_database(admin_url, name)
    workdir = Path(tempfile.mkdtemp(prefix=f"authledger-bench-{label}-"))
    admin = await asyncpg.connect(admin_url)
    server: Server | None = None
    session: Served | None = None
    try:
        machine = await describe(admin)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            server_environment = server_env(url, name[-12:]) | dict(env or {})
            await migrate(server_environment)
            server = Server(server_environment, free_port(), workdir / "serve.log", workers)
            log(f"authledger serve --workers {workers} on {server.url}")
            server.start()
            await server.wait_ready()
            conn = await asyncpg.connect(url)
            try:
                session = Served(server, server_environment, conn, admin, workdir, machine, started)
                yield session
            finally:
                await conn.close()
        finally:
            if server is not None:
                server.stop()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            log(f"dropped database {name}")
    finally:
        await admin.close()
        if session is None or session.keep_workdir:
            log(f"kept {kept} in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
