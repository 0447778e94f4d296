"""Helpers for the relay tests: fill the log, run relays (in a task or a process), wait for a
checkpoint, and read back everything a JetStream stream holds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from events.store import NO_STREAM, EventStore
from tests.support.builders import NOW, SAMPLE, ThingRenamed, a_stream, opened
from tests.support.nats import NatsNames
from tests.support.waiting import wait_until
from workers.base.jetstream import JetStreamPublisher
from workers.feed import POSITION_HEADER
from workers.relay import Relay, RelayConfig

REPO = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds a test waits for a worker to reach a state before failing


def fast_config(names: NatsNames, **overrides: float) -> RelayConfig:
    """A relay config with short timeouts, so outages are noticed and retried quickly."""
    settings: dict[str, float] = {
        "ack_timeout": 1.0,
        "idle_timeout": 1.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.5,
        "reconnect_wait": 0.2,
        **overrides,
    }
    return RelayConfig(stream=names.stream, subject_prefix=names.subject_prefix, **settings)  # type: ignore[arg-type]


async def append_events(
    store: EventStore, count: int, *, tenants: tuple[str, ...] = ("acme",)
) -> None:
    """`count` events: streams of one `thing.opened` and, every other stream, a rename."""
    appends = []
    left, index = count, 0
    while left > 0:
        events = [opened(f"n{index}")]
        if left > 1 and index % 2:
            events.append(SAMPLE.new(ThingRenamed(name=f"r{index}", reason="r"), occurred_at=NOW))
        stream = a_stream(tenants[index % len(tenants)])
        appends.append(store.append(stream, NO_STREAM, events))
        left -= len(events)
        index += 1
    await asyncio.gather(*appends)


async def checkpoint(pool: asyncpg.Pool, name: str) -> int:
    value = await pool.fetchval("SELECT position FROM checkpoints WHERE name = $1", name)
    return int(value or 0)


async def wait_for_checkpoint(
    pool: asyncpg.Pool, name: str, at_least: int, within: float = 20.0, poll: float = 0.02
) -> int:
    """The checkpoint `name` once it is at `at_least` or beyond (a relay in another process)."""

    async def reached() -> int | None:
        position = await checkpoint(pool, name)
        return position if position >= at_least else None

    return await wait_until(
        reached, within=within, what=f"checkpoint {name} at {at_least}", every=poll
    )


async def published_through(
    publisher: JetStreamPublisher[Any, Any, Any],
    position: int,
    *,
    retries: int = 0,
    within: float = WAIT,
) -> None:
    """Until the publisher (a relay, the revocation feed) has saved its checkpoint at
    `position` or beyond (and retried `retries` times at least)."""
    await asyncio.wait_for(
        publisher.wait_for(lambda s: s.position >= position and s.retries >= retries), within
    )


async def wait_for_lock_waiters(pool: asyncpg.Pool, count: int, within: float = 5.0) -> None:
    """Wait until exactly `count` sessions are blocked on an advisory lock."""
    query = """SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
               WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"""

    async def waiting() -> bool:
        return bool(await pool.fetchval(query) == count)

    await wait_until(waiting, within=within, what=f"{count} sessions waiting for an advisory lock")


@contextlib.asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[asyncio.Task[None]]:
    """The relay running in a task, cancelled (and awaited) on exit."""
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class RelayProcess:
    """A relay in a child process (tests/support/relay_process.py), to be SIGKILLed."""

    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, database_url: str, nats_url: str, names: NatsNames, log: Path) -> RelayProcess:
        argv = [
            sys.executable,
            "-m",
            "tests.support.relay_process",
            database_url,
            nats_url,
            names.stream,
            names.subject_prefix,
        ]
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return cls(process)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@dataclass(frozen=True)
class Stored:
    """One message of the stream: its sequence, subject, headers and body."""

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes

    @property
    def position(self) -> int:
        return int(self.headers[POSITION_HEADER])


async def stored_messages(js: JetStreamContext, stream: str) -> list[Stored]:
    """Every message of `stream`, in stream order, read by a throw-away pull consumer."""
    total = (await js.stream_info(stream)).state.messages
    config = ConsumerConfig(ack_policy=AckPolicy.NONE)
    sub = await js.pull_subscribe("", stream=stream, config=config)
    found: list[Msg] = []
    try:
        while len(found) < total:
            found.extend(await sub.fetch(min(500, total - len(found)), timeout=5))
    finally:
        await sub.unsubscribe()
    return [
        Stored(m.metadata.sequence.stream, m.subject, dict(m.headers or {}), m.data) for m in found
    ]


@contextlib.asynccontextmanager
async def jetstream(url: str, *, delete: str | None = None) -> AsyncIterator[JetStreamContext]:
    """A JetStream context on its own connection; deletes stream `delete` on the way out."""
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        yield nc.jetstream()
    finally:
        if delete is not None:
            with contextlib.suppress(NotFoundError, TimeoutError):
                await nc.jetstream().delete_stream(delete)
        await nc.close()
