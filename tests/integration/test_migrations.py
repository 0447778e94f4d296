"""Migrations build the expected schema, are safe to repeat and to run concurrently."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from migrations.runner import MigrationError, available, migrate, pending


async def test_migrations_build_the_expected_schema(empty_database_url: str) -> None:
    """After migrate: the event table with its guard triggers, checkpoints, and the record."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        ran = await migrate(conn)
        assert [m.version for m in ran] == [m.version for m in available()]
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {"events", "checkpoints", "schema_migrations"} <= tables
        triggers = {
            r["tgname"]
            for r in await conn.fetch(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'events'::regclass"
                " AND NOT tgisinternal"
            )
        }
        assert triggers == {"events_append_only", "events_no_truncate"}
        assert await pending(conn) == []
    finally:
        await conn.close()


async def test_migrate_twice_applies_nothing_the_second_time(empty_database_url: str) -> None:
    """A second run finds nothing to do and changes nothing."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        assert await migrate(conn) == []
        count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(available())
    finally:
        await conn.close()


async def test_concurrent_migrations_take_turns(empty_database_url: str) -> None:
    """Four processes migrating at once: no error, each migration applied exactly once."""
    conns = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sum(len(r) for r in results) == len(available())
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(available())
    finally:
        for c in conns:
            await c.close()


async def test_an_edited_migration_is_refused(empty_database_url: str) -> None:
    """A migration whose text changed after it ran stops the next migrate."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(MigrationError, match="edited"):
            await migrate(conn)
    finally:
        await conn.close()
