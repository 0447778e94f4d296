"""Helpers for the revocation feed tests: credentials issued and ended straight in the log,
a fast publisher config, the publisher in a task or a process, the revocation messages a
stream holds, and a real `authledger serve` with its logs drained."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from events.credential import (
    STREAM_TYPE,
    CredentialExpired,
    CredentialIssued,
    CredentialRescoped,
    CredentialRevoked,
)
from events.envelope import StreamRef
from events.ledger import LEDGER
from events.store import NO_STREAM, EventStore
from projections.runner import project
from service.crypto.signing import KeyRing
from subscriber.wire import all_tenants
from tests.support.nats import NatsNames
from tests.support.serve_process import SECRETS, Server, authledger_env, serving
from tests.support.waiting import wait_until
from workers.revocation_feed import FeedConfig, RevocationPublisher

REPO = Path(__file__).resolve().parents[2]
SECRET_KEY = SECRETS["AUTHLEDGER_SECRET_KEY"]
ADMIN_TOKEN = SECRETS["AUTHLEDGER_ADMIN_TOKEN"]
ISSUER = "https://auth.example.test"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Issued:
    tenant: str
    credential_id: str
    token: str
    kind: str
    registration_id: str | None
    user_id: str | None

    @property
    def token_hash(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()

    @property
    def stream(self) -> StreamRef:
        return StreamRef(self.tenant, STREAM_TYPE, self.credential_id)


async def issue(
    store: EventStore,
    count: int,
    *,
    tenant: str = "default",
    kind: str = "api_key",
    user: bool = False,
) -> list[Issued]:
    """`count` credentials, each `credential.issued` at version 1 (projected inline)."""
    issued = []
    for _ in range(count):
        cid = f"cred_{secrets.token_hex(8)}"
        user_id = f"usr_{secrets.token_hex(4)}" if user else None
        issued.append(Issued(tenant, cid, f"ak_{secrets.token_urlsafe(24)}", kind,
                             f"reg_{secrets.token_hex(6)}", user_id))  # fmt: skip
    await asyncio.gather(*(_issue(store, item) for item in issued))
    return issued


async def _issue(store: EventStore, item: Issued) -> None:
    event = CredentialIssued(
        credential_id=item.credential_id,
        kind="access_token" if item.kind == "access_token" else "api_key",
        token_hash=item.token_hash,
        scopes=("api.read",),
        issued_via="anonymous",
        registration_id=item.registration_id,
        user_id=item.user_id,
        expires_at=NOW + timedelta(hours=1) if item.kind == "access_token" else None,
    )
    await store.append(item.stream, NO_STREAM, [LEDGER.new(event, occurred_at=NOW)],
                       projector=project)  # fmt: skip


async def rescope(store: EventStore, item: Issued, user_id: str) -> Issued:
    event = CredentialRescoped(scopes=("api.read", "api.write"), user_id=user_id)
    await store.append(item.stream, 1, [LEDGER.new(event, occurred_at=NOW)], projector=project)
    return Issued(item.tenant, item.credential_id, item.token, item.kind,
                  item.registration_id, user_id)  # fmt: skip


async def end(
    store: EventStore, items: Sequence[Issued], *, expire: bool = False, reason: str = "operator"
) -> None:
    """A `credential.revoked` (or `credential.expired`) for each, appended concurrently."""
    ending = CredentialExpired() if expire else CredentialRevoked(reason=reason, note="test")

    async def one(item: Issued) -> None:
        version = len(await store.read_stream(item.stream))
        event = LEDGER.new(ending, occurred_at=NOW + timedelta(minutes=5))
        await store.append(item.stream, version, [event], projector=project)

    await asyncio.gather(*(one(item) for item in items))


def fast_feed_config(names: NatsNames, **overrides: float | int | str) -> FeedConfig:
    """A publisher config with short timeouts, so outages are noticed and retried quickly."""
    settings: dict[str, float | int | str] = {
        "ack_timeout": 1.0,
        "idle_timeout": 1.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.5,
        "reconnect_wait": 0.2,
        "issuer": ISSUER,
        **overrides,
    }
    return FeedConfig(stream=names.stream, subject_prefix=names.subject_prefix, **settings)  # type: ignore[arg-type]


def publisher(
    pool: asyncpg.Pool, nats_url: str, names: NatsNames, **overrides: float | int
) -> RevocationPublisher:
    return RevocationPublisher(
        pool, nats_url, KeyRing(SECRET_KEY), fast_feed_config(names, **overrides)
    )


@contextlib.asynccontextmanager
async def publishing(feed: RevocationPublisher) -> AsyncIterator[asyncio.Task[None]]:
    """The publisher running in a task, cancelled (and awaited) on exit."""
    task = asyncio.create_task(feed.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def feed_checkpoint(pool: asyncpg.Pool, name: str) -> tuple[int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT position FROM checkpoints WHERE name = $1) AS position,"
        " (SELECT position FROM checkpoints WHERE name = $1 || ':seq') AS seq",
        name,
    )
    assert row is not None
    return int(row["position"] or 0), int(row["seq"] or 0)


async def wait_published(
    pool: asyncpg.Pool, name: str, through: int | None = None, within: float = 30.0
) -> int:
    """Wait until the publisher's checkpoint reaches `through` (default: the log's head)."""
    if through is None:
        through = int(await pool.fetchval("SELECT coalesce(max(position), 0) FROM events"))

    async def published() -> int | None:
        position = (await feed_checkpoint(pool, name))[0]
        return position if position >= through else None

    return await wait_until(published, within=within, what=f"feed checkpoint {name} >= {through}")


async def revocation_messages(js: JetStreamContext, names: NatsNames) -> list[Msg]:
    """Every revocation message of the stream, in stream order (a throw-away consumer)."""
    info = await js.stream_info(names.stream)
    config = ConsumerConfig(ack_policy=AckPolicy.NONE)
    wanted = all_tenants(names.subject_prefix)
    sub = await js.pull_subscribe(wanted, stream=names.stream, config=config)
    found: list[Msg] = []
    try:
        consumer = await sub.consumer_info()
        total = consumer.num_pending or 0
        while len(found) < total:
            found.extend(await sub.fetch(min(500, total - len(found)), timeout=5))
    finally:
        await sub.unsubscribe()
    assert info.state.messages >= len(found)
    return found


@dataclass
class FeedProcess:
    """A publisher in a child process (tests/support/revocation_feed_process.py), to be
    SIGKILLed."""

    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, database_url: str, nats_url: str, names: NatsNames, log: Path) -> FeedProcess:
        argv = [sys.executable, "-m", "tests.support.revocation_feed_process", database_url,
                nats_url, names.stream, names.subject_prefix]  # fmt: skip
        with log.open("ab") as out:
            process = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        return cls(process)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def serve_env(database_url: str, nats_url: str, names: NatsNames, **values: str) -> dict[str, str]:
    return authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url,
        AUTHLEDGER_NATS_URL=nats_url,
        AUTHLEDGER_NATS_STREAM=names.stream,
        AUTHLEDGER_NATS_SUBJECT_PREFIX=names.subject_prefix,
        AUTHLEDGER_RATE_LIMITS="off",
        AUTHLEDGER_LOG_LEVEL="warning",
        **SECRETS,
        **values,
    )


@contextlib.asynccontextmanager
async def served(env: dict[str, str]) -> AsyncIterator[Server]:
    """`authledger serve` whose stderr is read all along (a full pipe would stall it)."""
    async with serving([], env) as server:
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
