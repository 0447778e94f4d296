"""Helpers for the fault tests (tests/faults): Postgres and NATS of the test's own that it can
stop and start again at the same address, `authledger worker` processes, a request load that
records every answer, and `eventually` (tests.support.waiting.wait_until)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from events.hashchain import verify_log
from events.store import EventStore
from migrations.runner import migrate
from projections.replay import verify
from service.crypto.tokens import token_hash
from service.dev.embedded import EmbeddedNats, EmbeddedPostgres
from tests.support.serve_process import AUTHLEDGER, Server, serving
from tests.support.waiting import wait_until

ANONYMOUS = {"type": "anonymous", "requested_credential_type": "api_key"}
eventually = wait_until  # the fault tests' name for it


class RestartablePostgres:
    """An embedded Postgres (pgserver, Unix socket) in a folder of its own, stopped (fast
    shutdown: sessions ended) and started again at the same socket, so the URL holds."""

    def __init__(self) -> None:
        # short: the socket path must fit in sun_path (108 bytes)
        self.folder = Path(tempfile.mkdtemp(prefix="al-pg-"))
        self._server: EmbeddedPostgres | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.to_thread(EmbeddedPostgres.start, self.folder / "data")
        if self.url and self._server.url != self.url:
            raise AssertionError(f"Postgres came back at {self._server.url}, not {self.url}")
        self.url = self._server.url

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.stop)

    async def migrated_database(self, name: str = "authledger") -> str:
        """A new database on this server with every migration applied; its URL."""
        admin = await asyncpg.connect(self.url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        url = self.url.replace("/postgres?", f"/{name}?", 1)
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        return url

    async def remove(self) -> None:
        await self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def restartable_postgres() -> AsyncIterator[RestartablePostgres]:
    server = RestartablePostgres()
    try:
        await server.start()
        yield server
    finally:
        await server.remove()


class RestartableNats:
    """An embedded nats-server with JetStream in a folder of its own, stopped and started
    again on the same port with the same store."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="al-nats-"))
        self._server: EmbeddedNats | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.to_thread(EmbeddedNats.start, self.folder, port=self.port)
        self.port = self._server.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.stop)

    async def remove(self) -> None:
        await self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def restartable_nats() -> AsyncIterator[RestartableNats]:
    server = RestartableNats()
    try:
        await server.start()
        yield server
    finally:
        await server.remove()


@contextlib.asynccontextmanager
async def worker_process(
    env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`authledger worker` (relay, mailer, expiry, feeds...) in its own session, its output
    in `log`; killed with its children on the way out if it still runs."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            AUTHLEDGER, "worker", env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@contextlib.asynccontextmanager
async def serve_process(env: dict[str, str], *args: str) -> AsyncIterator[Server]:
    """`authledger serve ARGS` whose stderr is read all along into `stderr_lines` (a full
    pipe would stall it); killed with its children on the way out if it still runs."""
    async with serving(args, env) as server:
        assert server.proc.stderr is not None
        stderr = server.proc.stderr

        async def drain() -> None:
            while line := await stderr.readline():
                server.stderr_lines.append(line.decode())

        draining = asyncio.create_task(drain())
        try:
            yield server
        finally:
            draining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await draining


@dataclass(frozen=True)
class Answer:
    """One request of a load: when it was sent and answered, and what came back."""

    sent: float  # time.monotonic()
    answered: float
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    body: Any
    headers: httpx.Headers | None
    error: str | None = None


@dataclass
class Load:
    """`concurrency` tasks, each sending `request(client)` then waiting `pause` seconds, until
    `stop()`; every answer is kept in `answers`."""

    client: httpx.AsyncClient
    request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
    concurrency: int = 4
    pause: float = 0.0
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.concurrency)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        try:
            async with asyncio.timeout(60):  # every request has its own client timeout
                await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> None:
        self._stop.set()

    async def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                response = await self.request(self.client)
            except httpx.TransportError as exc:
                self.answers.append(
                    Answer(sent, time.monotonic(), None, None, None, f"{type(exc).__name__}")
                )
            else:
                body = (
                    response.json()
                    if response.headers.get("content-type", "").startswith("application/json")
                    else response.text
                )
                self.answers.append(
                    Answer(sent, time.monotonic(), response.status_code, body, response.headers)
                )
            if self.pause:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.pause)

    def between(self, start: float, end: float) -> list[Answer]:
        """Answers to requests sent within [start, end]."""
        return [a for a in self.answers if start <= a.sent <= end]

    def ok(self) -> list[Answer]:
        return [a for a in self.answers if a.status == 200]


async def register(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/agent/auth", json=ANONYMOUS)


# -- what the database must hold after a fault --------------------------------------------


async def assert_registrations_recorded(database_url: str, registered: Sequence[Any]) -> None:
    """Each answered anonymous registration (its 200 body) is in the log and the read models
    with its key; and nothing is half-written: every anonymous registration has its key and
    every anonymous key its registration, in the log as in the read models."""
    conn = await asyncpg.connect(database_url)
    try:
        created = await conn.fetch(
            "SELECT stream_id, payload->>'credential_id' AS other FROM events"
            " WHERE type = 'registration.created' AND payload->>'kind' = 'anonymous'"
        )
        issued = await conn.fetch(
            "SELECT stream_id, payload->>'registration_id' AS other FROM events"
            " WHERE type = 'credential.issued' AND payload->>'issued_via' = 'anonymous'"
        )
        registrations = await conn.fetch(
            "SELECT registration_id, credential_id FROM registrations WHERE kind = 'anonymous'"
        )
        credentials = await conn.fetch(
            "SELECT credential_id, registration_id, token_hash, status FROM credentials"
            " WHERE issued_via = 'anonymous'"
        )
    finally:
        await conn.close()
    ids = {body["registration_id"] for body in registered}
    assert len(ids) == len(registered), "a registration id was answered twice"
    logged = {row["stream_id"]: row["other"] for row in created}  # registration -> key
    keys_logged = {row["other"]: row["stream_id"] for row in issued}  # registration -> key
    projected = {row["registration_id"]: row["credential_id"] for row in registrations}
    keys_projected = {row["registration_id"]: row["credential_id"] for row in credentials}
    assert not ids - set(logged), f"{len(ids - set(logged))} answered, not in the log"
    assert not ids - set(projected), f"{len(ids - set(projected))} answered, not projected"
    by_hash = {row["token_hash"]: row for row in credentials}
    for body in registered:
        key = by_hash.get(token_hash(body["credential"]))
        assert key is not None, f"the key of {body['registration_id']} is not in the read model"
        assert (key["registration_id"], key["status"]) == (body["registration_id"], "active")
    # Nothing half-written: each registration with its key, in the log and the read models.
    assert logged == keys_logged, "a registration.created without its credential.issued"
    assert projected == logged, "the registrations read model differs from the log"
    assert keys_projected == logged, "the credentials read model differs from the log"


async def assert_log_sound(database_url: str) -> int:
    """Positions gap-free, the hash chain intact, the read models equal to a rebuild from the
    log; the head position. `database_url` is the owner's: the rebuild makes a schema."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        row = await pool.fetchrow("SELECT coalesce(max(position), 0) AS head, count(*) FROM events")
        assert row is not None
        head, count = int(row["head"]), int(row["count"])
        assert count == head, f"{head - count} gaps in the positions"
        store = EventStore(pool)
        try:
            chain = await verify_log(store.read_all)
        finally:
            await store.close()
        assert chain.ok, f"the chain breaks at {chain.first_break}: {chain.reason}"
        assert chain.checked >= head
    finally:
        await pool.close()
    report = await verify(database_url)
    assert report.differences == [], report.differences[:5]
    return head
