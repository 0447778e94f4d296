"""Applies the numbered SQL files of the `migrations` package, forward only.

Each file runs in its own transaction and is recorded in `schema_migrations` with its
checksum. Then, every time, the owner/runtime split is applied again (migrations/roles.py:
guards.sql and privileges.sql), so a table a migration added gets its grants at once. A
session-level advisory lock makes two concurrent runs take turns, so running twice, or from
two processes at once, is safe.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

from migrations.roles import RUNTIME_ROLE, RoleError, apply_roles

MIGRATION_LOCK = 0x6175_7468_6D69_6772  # "authmigr"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
log = structlog.get_logger("migrations.runner")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    found = []
    for entry in resources.files("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            sql = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], sql))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration numbers must run 1, 2, 3 ... without gaps: {versions}")
    return found


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def applied(conn: asyncpg.Connection) -> dict[int, str]:
    """Version -> checksum of what this database has applied (empty when never migrated)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {r["version"]: r["checksum"] for r in rows}


async def pending(conn: asyncpg.Connection) -> list[Migration]:
    done = await applied(conn)
    todo = []
    for migration in available():
        if migration.version not in done:
            todo.append(migration)
        elif done[migration.version] != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was edited after it ran"
            )
    return todo


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply every pending migration; returns the ones this call applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(_CREATE_TABLE)
        ran = []
        for migration in await pending(conn):
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            # debug: `authledger migrate` and `dev` print each one; info would say it twice
            log.debug("migrate.applied", version=migration.version, name=migration.name)
            ran.append(migration)
        try:
            roles = await apply_roles(conn)
        except RoleError as exc:
            raise MigrationError(str(exc)) from None
        if roles.created_runtime_role:
            log.info("migrate.runtime_role_created", role=RUNTIME_ROLE)
        if not roles.granted:
            log.warning(
                "migrate.runtime_role_missing",
                role=RUNTIME_ROLE,
                owner=roles.owner,
                hint=f"create it (CREATE ROLE {RUNTIME_ROLE} NOLOGIN) and migrate again; "
                "see docs/security.md, The database roles",
            )
        return ran
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
