"""Real-service fixtures: a Postgres database per test cloned from a migrated template (the
clones made ahead and dropped behind, tests/support/ready_databases.py), and NATS names
(stream, subject prefix) per test, so tests never see each other's data.

The databases belong to the owner role, which migrates the template; `database_url` (and so
`pool`, `store`, and every serve and worker a test starts) connects as the runtime role, as
production should (tests/support/database_roles.py). `owner_database_url` is for what only the
owner may do: migrate, replay, and tampering with the log to test that audits catch it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from events.store import EventStore
from migrations.runner import migrate
from tests.support.backends import (
    Backend,
    describe_backend,
    describe_started,
    select_backend,
    start_backend,
    with_database,
)
from tests.support.database_roles import OWNER_ROLE, as_owner, as_runtime, ensure_roles
from tests.support.hang_report import HangReport
from tests.support.nats import NatsNames
from tests.support.ready_databases import ReadyDatabases

_KIND = pytest.StashKey[str]()  # the backend the header named, so the probes run once
_STARTED = pytest.StashKey[Backend]()
_hangs: list[HangReport] = []  # one watchdog: every task's stack when a test nears its timeout


def pytest_configure(config: pytest.Config) -> None:
    timeout = float(config.getini("timeout") or 0)
    if timeout > 0 and not _hangs:
        _hangs.append(HangReport.start(timeout))


def pytest_runtest_setup(item: pytest.Item) -> None:
    for hangs in _hangs:
        hangs.started(item.nodeid)


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    for hangs in _hangs:
        hangs.finished()


def pytest_report_header(config: pytest.Config) -> str:
    """Which backend the suite uses and where; containers and embedded are not started here."""
    try:
        config.stash[_KIND] = select_backend()
        return describe_backend(config.stash[_KIND])
    except RuntimeError as exc:  # the `backend` fixture raises it again, for the tests that use it
        return f"authledger backend: none ({exc})"


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    started = config.stash.get(_STARTED, None)
    if started is not None and started.kind in ("containers", "embedded"):
        terminalreporter.write_line(describe_started(started))


@pytest.fixture(scope="session")
def backend(pytestconfig: pytest.Config) -> Iterator[Backend]:
    kind = pytestconfig.stash.get(_KIND, None) or select_backend()
    chosen = pytestconfig.stash[_STARTED] = start_backend(kind)
    try:
        yield chosen
    finally:
        chosen.stop()


@pytest.fixture(scope="session")
async def template_database(backend: Backend) -> AsyncIterator[str]:
    name = f"authledger_tpl_{uuid.uuid4().hex[:12]}"
    await ensure_roles(backend.database_url)
    admin = await asyncpg.connect(backend.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {OWNER_ROLE}')
        conn = await asyncpg.connect(as_owner(with_database(backend.database_url, name)))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        await admin.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true')
        yield name
        await admin.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false')
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def scratch_database(
    backend: Backend, template: str | None = None, owner: str | None = None
) -> AsyncIterator[str]:
    """A database of the caller's own (a copy of `template`, or empty), dropped afterwards;
    the admin's URL to it."""
    name = f"authledger_t_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    owned = f" OWNER {owner}" if owner else ""
    admin = await asyncpg.connect(backend.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"{copy}{owned}')
        yield with_database(backend.database_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def ready_databases(
    backend: Backend, template_database: str
) -> AsyncIterator[ReadyDatabases]:
    """Copies of the template made ahead of the tests (tests/support/ready_databases.py)."""
    databases = ReadyDatabases(backend.database_url, template_database, OWNER_ROLE)
    try:
        yield databases
    finally:
        await databases.close()


@pytest.fixture
async def owner_database_url(
    backend: Backend, ready_databases: ReadyDatabases
) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own, as the owner role."""
    name = await ready_databases.take()
    try:
        yield as_owner(with_database(backend.database_url, name))
    finally:
        ready_databases.give_back(name)


@pytest.fixture
def database_url(owner_database_url: str) -> str:
    """The same database as the runtime role: what serve and worker connect as."""
    return as_runtime(owner_database_url)


@pytest.fixture
async def empty_database_url(backend: Backend) -> AsyncIterator[str]:
    """A database of this test's own that was never migrated."""
    async with scratch_database(backend) as url:
        yield url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def owner_pool(owner_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The owner role's connections to the same database: for what the runtime may not do."""
    created = await asyncpg.create_pool(owner_database_url, min_size=1, max_size=2)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def store(pool: asyncpg.Pool) -> AsyncIterator[EventStore]:
    created = EventStore(pool)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
def nats_names() -> NatsNames:
    """A JetStream stream name and subject prefix of this test's own."""
    return NatsNames.unique()
