"""`authledger replay`: every read model rebuilt from the log beside the live one, then switched
in without stopping the service (blue/green); or, with `verify`, compared with the live one.

Build: a shadow schema gets tables shaped like the live ones (columns, defaults, checks, and
the same constraints and indexes under the same names). The log is folded into them in
batches, each batch in one transaction with the shadow's per-projection checkpoints, so a
build that stops resumes where it was and never applies an event twice. Writers go on.

Switch: under the append lock (writers wait, readers don't), the last events are folded in,
the shadow is checksummed against the live tables (the differences are reported: they are
what the live tables had wrong), and each live table is swapped for its shadow by moving
schemas, in one transaction, which also gives the new tables their write guards and the
runtime role's grants (migrations/roles.py). Prepared statements re-resolve the names on
their next use.

Runs as the owner role (`authledger replay` connects with AUTHLEDGER_OWNER_DATABASE_URL):
creating schemas and moving tables needs it, and so does `verify`'s throwaway shadow.

Verify: in one REPEATABLE READ snapshot, the live tables are digested (md5 of each row, by
primary key) and the head position read; a throwaway shadow is built up to that head and
digested too; each key whose rows differ is reported with the columns that differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from events.appends import APPEND_LOCK
from events.sql import load_queries
from events.store import row_to_event
from migrations.roles import apply_roles
from projections.runner import READ_ALL, TABLES, project

Q = load_queries("projections", "replay.sql")
SHADOW = "authledger_replay"
RETIRED = "authledger_retired"
BATCH = 5000
Progress = Callable[[int, int], None]  # (done, total), as the work goes (service/cli/progress.py)


@dataclass(frozen=True, slots=True)
class Difference:
    table: str
    key: tuple[Any, ...]
    problem: str  # "missing" (live lacks it), "extra" (live has it, the log does not), "differs"
    columns: tuple[str, ...] = ()

    def line(self) -> str:
        key = ", ".join(map(str, self.key))
        detail = f": {', '.join(self.columns)}" if self.columns else ""
        return f"{self.table} [{key}] {self.problem}{detail}"


@dataclass
class Report:
    applied: int = 0
    head: int = 0
    seconds: float = 0.0
    differences: list[Difference] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.applied / self.seconds if self.seconds > 0 else 0.0


async def _create_shadow(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await conn.execute(
        f'CREATE TABLE IF NOT EXISTS "{schema}".projection_checkpoints '
        "(projection text PRIMARY KEY, position bigint NOT NULL)"
    )
    for table in TABLES:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{schema}".{table}')
        if exists:
            continue
        await conn.execute(
            f'CREATE TABLE "{schema}".{table} (LIKE public.{table} INCLUDING DEFAULTS '
            "INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY)"
        )
        for row in await conn.fetch(Q["constraints"], table):
            if row["contype"] == "p":  # the key the statements find rows by; the rest later
                await _add_constraint(conn, schema, table, row)
        await conn.execute(f'INSERT INTO "{schema}".projection_checkpoints VALUES ($1, 0)', table)


async def _add_constraint(
    conn: asyncpg.Connection, schema: str, table: str, row: asyncpg.Record
) -> None:
    await conn.execute(
        f'ALTER TABLE "{schema}".{table} ADD CONSTRAINT "{row["conname"]}" {row["definition"]}'
    )


async def _complete_shadow(conn: asyncpg.Connection, schema: str) -> None:
    """The live tables' other constraints and indexes, under their names, once the bulk of
    the log is in: building an index once is far cheaper than keeping it up row by row."""
    for table in TABLES:
        present = {r["name"] for r in await conn.fetch(Q["shadow_relations"], schema, table)}
        for row in await conn.fetch(Q["constraints"], table):
            if row["conname"] not in present:
                await _add_constraint(conn, schema, table, row)
        for row in await conn.fetch(Q["plain_indexes"], table):
            if row["indexname"] not in present:
                await conn.execute(
                    row["indexdef"].replace(f" ON public.{table} ", f' ON "{schema}".{table} ', 1)
                )


async def _checkpoint(conn: asyncpg.Connection, schema: str) -> int:
    positions = await conn.fetch(f'SELECT position FROM "{schema}".projection_checkpoints')
    values = {r["position"] for r in positions}
    if len(values) != 1:
        raise RuntimeError(f"the shadow's projections stand at different positions: {values}")
    return int(values.pop())


async def _fold(
    conn: asyncpg.Connection,
    schema: str,
    until: int | None,
    batch: int,
    progress: Progress | None = None,
) -> int:
    """Fold the log after the shadow's checkpoint (up to `until`) into the shadow, one
    transaction per batch, checkpoints included. Returns how many events were applied;
    `progress` hears (applied, to apply) after each batch, counted from the log's head."""
    applied, total = 0, 0
    if progress is not None:
        end = until if until is not None else int(await conn.fetchval(Q["head"]))
        total = max(end - await _checkpoint(conn, schema), 0)
    while True:
        async with conn.transaction():
            folded = await _fold_batch(conn, schema, until, batch)
        if not folded:
            return applied
        applied += folded
        if progress is not None:
            progress(applied, total)


async def _fold_batch(conn: asyncpg.Connection, schema: str, until: int | None, batch: int) -> int:
    """One batch after the shadow's checkpoint, and the checkpoint moved past it, in the
    caller's transaction; how many events it held (0: the shadow is caught up)."""
    after = await _checkpoint(conn, schema)
    limit = batch if until is None else min(batch, until - after)
    rows = await conn.fetch(READ_ALL, after, limit) if limit > 0 else []
    if not rows:
        return 0
    events = [row_to_event(r) for r in rows]
    await conn.execute(f'SET LOCAL search_path = "{schema}", public')
    await project(conn, events)
    await conn.execute("SET LOCAL search_path = public")
    await conn.execute(
        f'UPDATE "{schema}".projection_checkpoints SET position = $1', events[-1].position
    )
    return len(events)


async def _digests(conn: asyncpg.Connection, schema: str, table: str) -> dict[tuple[Any, ...], str]:
    keys = [r["attname"] for r in await conn.fetch(Q["primary_key"], table)]
    if not keys:
        raise RuntimeError(f"{table} has no primary key to compare rows by")
    columns = ", ".join(f't."{k}"' for k in keys)
    rows = await conn.fetch(f'SELECT {columns}, md5(t::text) AS digest FROM "{schema}".{table} t')
    return {tuple(r[k] for k in keys): r["digest"] for r in rows}


async def _checksum(conn: asyncpg.Connection, schema: str, table: str) -> tuple[int, int]:
    """(rows, an order-free sum of 60-bit prefixes of each row's md5)."""
    found = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)"
        f'::bigint), 0) AS s FROM "{schema}".{table} t'
    )
    if found is None:
        raise RuntimeError(f"no checksum for {schema}.{table}")
    return int(found["n"]), int(found["s"])


async def _row(
    conn: asyncpg.Connection, schema: str, table: str, key: tuple[Any, ...]
) -> dict[str, Any]:
    keys = [r["attname"] for r in await conn.fetch(Q["primary_key"], table)]
    where = " AND ".join(f'"{k}" = ${i}' for i, k in enumerate(keys, 1))
    found = await conn.fetchrow(f'SELECT * FROM "{schema}".{table} WHERE {where}', *key)
    return dict(found) if found is not None else {}


async def _compare(
    live: asyncpg.Connection, shadow: asyncpg.Connection, schema: str, *, quick: bool = False
) -> list[Difference]:
    """Each differing row; with `quick`, tables whose checksums agree are not compared row by
    row (the checksum is computed in the database, so an unchanged table costs one scan)."""
    out: list[Difference] = []
    for table in TABLES:
        if quick and await _checksum(live, "public", table) == await _checksum(
            shadow, schema, table
        ):
            continue
        mine, theirs = await _digests(live, "public", table), await _digests(shadow, schema, table)
        for key in sorted(mine.keys() | theirs.keys(), key=repr):
            if key not in mine:
                out.append(Difference(table, key, "missing"))
            elif key not in theirs:
                out.append(Difference(table, key, "extra"))
            elif mine[key] != theirs[key]:
                a, b = (
                    await _row(live, "public", table, key),
                    await _row(shadow, schema, table, key),
                )
                columns = tuple(c for c in a if a.get(c) != b.get(c))
                out.append(Difference(table, key, "differs", columns))
    return out


async def _drop(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def verify(
    database_url: str, *, batch: int = BATCH, progress: Progress | None = None
) -> Report:
    """Rebuild from the log into a throwaway shadow and compare it with the live tables as of
    one snapshot; the service keeps running. `progress`: see `_fold`."""
    started, schema = time.perf_counter(), f"{SHADOW}_verify"
    live = await asyncpg.connect(database_url)
    shadow = await asyncpg.connect(database_url)
    try:
        await _drop(shadow, schema)
        async with live.transaction(isolation="repeatable_read", readonly=True):
            head = int(await live.fetchval(Q["head"]))
            await _create_shadow(shadow, schema)
            applied = await _fold(shadow, schema, head, batch, progress)
            differences = await _compare(live, shadow, schema)
        return Report(applied, head, time.perf_counter() - started, differences)
    finally:
        await _drop(shadow, schema)
        await shadow.close()
        await live.close()


async def replay(
    database_url: str, *, batch: int = BATCH, progress: Progress | None = None
) -> Report:
    """Build beside, checksum, switch. Resumes a build an earlier run left behind.
    `progress` follows the build (see `_fold`), the bulk of the work."""
    started = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        await _create_shadow(conn, SHADOW)
        applied = await _fold(conn, SHADOW, None, batch, progress)
        await _complete_shadow(conn, SHADOW)
        applied += await _fold(conn, SHADOW, None, batch)  # what came in meanwhile
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            applied += await _fold_in_transaction(conn, SHADOW)
            head = int(await conn.fetchval(Q["head"]))
            differences = await _compare(conn, conn, SHADOW, quick=True)
            await conn.execute(f'CREATE SCHEMA "{RETIRED}"')
            for table in TABLES:
                await conn.execute(f'ALTER TABLE public.{table} SET SCHEMA "{RETIRED}"')
                await conn.execute(f'ALTER TABLE "{SHADOW}".{table} SET SCHEMA public')
            await _drop(conn, RETIRED)
            await _drop(conn, SHADOW)
            await apply_roles(conn)  # the new tables: their guards and the runtime's grants
        return Report(applied, head, time.perf_counter() - started, differences)
    finally:
        await conn.close()


async def _fold_in_transaction(conn: asyncpg.Connection, schema: str) -> int:
    """The last events, folded inside the caller's (locked) transaction."""
    applied = 0
    while folded := await _fold_batch(conn, schema, None, BATCH):
        applied += folded
    return applied
