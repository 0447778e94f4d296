"""Copies of the migrated template made ahead of the tests that take them, dropped behind them.

Every test that touches Postgres gets a database of its own, copied from the session's
migrated template. Making a copy (CREATE DATABASE ... TEMPLATE) and dropping it take about
0.2 s and 0.1 s on the developers' machine kind, mostly waiting on the disk, and a test's
own work is often less: across the suite that was about a third of `make test`'s time
(session 10: 15 min on a slower machine of the kind, 10 min with the copies made ahead).
`ReadyDatabases` makes the next copies in background tasks of the session's event loop
while tests run, hands one to each test that asks, and drops a test's copy in the
background once it is done. `close` waits for every copy to be made and dropped, so the
session leaves none behind and the template can go.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque

import asyncpg

AHEAD = 2  # copies kept in the making: a test's set-up rarely waits, the disk is not flooded


class ReadyDatabases:
    """Fresh copies of `template` owned by `owner`, from the server at `admin_url`."""

    def __init__(self, admin_url: str, template: str, owner: str, *, ahead: int = AHEAD) -> None:
        self._admin_url, self._template, self._owner, self._ahead = (
            admin_url,
            template,
            owner,
            ahead,
        )
        self._making: deque[asyncio.Task[str]] = deque()
        self._dropping: set[asyncio.Task[None]] = set()
        self._failed: list[BaseException] = []  # drops that failed, raised by `close`

    async def take(self) -> str:
        """The name of a copy no one else has: one made ahead if it is ready or nearly so."""
        making = self._making.popleft() if self._making else self._make()
        while len(self._making) < self._ahead:
            self._making.append(self._make())
        try:
            return await making
        except Exception:  # made while the server was away (a fault test): make another
            return await self._make()

    def give_back(self, name: str) -> None:
        """Drop `name` in the background; `close` waits for it."""
        task = asyncio.get_running_loop().create_task(self._drop(name))
        self._dropping.add(task)
        task.add_done_callback(self._dropped)

    def _dropped(self, task: asyncio.Task[None]) -> None:
        self._dropping.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._failed.append(error)

    async def close(self) -> None:
        """Wait for the copies in the making and drop them, and every copy given back."""
        made = await asyncio.gather(*self._making, return_exceptions=True)
        self._making.clear()
        for name in made:
            if isinstance(name, str):
                self.give_back(name)
        await asyncio.gather(*self._dropping, return_exceptions=True)  # `_dropped` keeps failures
        if self._failed:
            raise self._failed[0]

    def _make(self) -> asyncio.Task[str]:
        return asyncio.get_running_loop().create_task(self._create())

    async def _create(self) -> str:
        name = f"authledger_t_{uuid.uuid4().hex[:16]}"
        await self._admin(
            f'CREATE DATABASE "{name}" TEMPLATE "{self._template}" OWNER {self._owner}'
        )
        return name

    async def _drop(self, name: str) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def _admin(self, statement: str) -> None:
        """A connection of its own per statement (a few ms beside the statement's 0.1-0.2 s):
        none is kept across a fault test's restart of the server."""
        conn = await asyncpg.connect(self._admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()
