"""The database a bench creates for itself on a Postgres server (and drops at its end), and
the questions every bench asks its event log."""

from __future__ import annotations

import argparse
import contextlib
import os
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def add_database_url(parser: argparse.ArgumentParser) -> None:
    """The `--database-url` option: the server's admin URL, where the bench makes its own."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("AUTHLEDGER_BENCH_DATABASE_URL", DEFAULT_ADMIN_URL),
        help="admin URL of the server; the bench creates and drops its own database there "
        "(default: $AUTHLEDGER_BENCH_DATABASE_URL or %(default)s)",
    )


class BenchLog:
    """Questions to the bench database's event log; a bench adds its own."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def head(self) -> int:
        value = await self.conn.fetchval("SELECT coalesce(max(position), 0) FROM events")
        return int(value)

    async def checkpoint(self) -> None:
        """CHECKPOINT, where the role may."""
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await self.conn.execute("CHECKPOINT")

    async def registrations_per_batch(self, after: int) -> float:
        """Registrations per committed batch after position `after`: the events of one batch
        share the writer's `recorded_at` (events/writer.py, the floors' `commit`), so this is
        how well group commit joined the requests."""
        row = await self.conn.fetchrow(
            "SELECT count(*) AS registrations, count(DISTINCT recorded_at) AS batches "
            "FROM events WHERE type = 'registration.created' AND position > $1",
            after,
        )
        return float(row["registrations"]) / max(int(row["batches"]), 1) if row else 0.0
