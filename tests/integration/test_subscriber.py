"""The resource servers' subscriber (`subscriber/`) against a real `authledger serve` (JWKS,
`/admin/revocations`), the publisher, Postgres and NATS: restarts, gaps, forgeries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from msgspec.structs import replace
from nats.js import JetStreamContext

from events.store import EventStore
from subscriber.client import RevocationSubscriber, SubscriberConfig
from subscriber.wire import key_id, sign, subject, unverified
from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.relay_support import jetstream
from tests.support.revocations import (
    ADMIN_TOKEN,
    Issued,
    end,
    issue,
    publisher,
    publishing,
    revocation_messages,
    serve_env,
    served,
    wait_published,
)
from tests.support.serve_process import AUTHLEDGER, Server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def js(backend: Backend, nats_names: NatsNames) -> AsyncIterator[JetStreamContext]:
    async with jetstream(backend.nats_url, delete=nats_names.stream) as context:
        yield context


@pytest.fixture
async def server(
    backend: Backend, database_url: str, nats_names: NatsNames
) -> AsyncIterator[Server]:
    """`authledger serve` on the test's database: the JWKS and /admin/revocations."""
    async with served(serve_env(database_url, backend.nats_url, nats_names)) as running:
        yield running


@pytest.fixture
async def feed(
    pool: asyncpg.Pool, backend: Backend, nats_names: NatsNames, server: Server
) -> AsyncIterator[str]:
    """The publisher running (after the server made the signing key); its checkpoint name."""
    running = publisher(pool, backend.nats_url, nats_names)
    async with publishing(running):
        yield running.config.checkpoint_name


def config_for(
    backend: Backend, names: NatsNames, server: Server, state: Path | None, *, token: bool = True
) -> SubscriberConfig:
    return SubscriberConfig(
        nats_url=backend.nats_url,
        service_url=server.url,
        stream=names.stream,
        subject_prefix=names.subject_prefix,
        state_path=state,
        admin_token=ADMIN_TOKEN if token else None,
    )


@contextlib.asynccontextmanager
async def following(sub: RevocationSubscriber) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sub.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def revoked(store: EventStore, pool: asyncpg.Pool, feed: str, count: int) -> list[Issued]:
    """`count` credentials issued and revoked, and published."""
    items = await issue(store, count)
    await end(store, items)
    await wait_published(pool, feed)
    return items


async def subscribe_process(
    server: Server, names: NatsNames, backend: Backend, state: Path
) -> asyncio.subprocess.Process:
    """`authledger subscribe --state FILE --json` printing to a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}
    env |= {"AUTHLEDGER_NATS_URL": backend.nats_url, "AUTHLEDGER_PUBLIC_URL": server.url,
            "AUTHLEDGER_ADMIN_TOKEN": ADMIN_TOKEN, "AUTHLEDGER_NATS_STREAM": names.stream,
            "AUTHLEDGER_NATS_SUBJECT_PREFIX": names.subject_prefix}  # fmt: skip
    return await asyncio.create_subprocess_exec(
        AUTHLEDGER, "subscribe", "--state", str(state), "--json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def lines(
    proc: asyncio.subprocess.Process, count: int, within: float
) -> list[dict[str, str]]:
    assert proc.stdout is not None
    found: list[dict[str, str]] = []
    async with asyncio.timeout(within):
        while len(found) < count:
            line = await proc.stdout.readline()
            assert line, "subscribe exited"
            found.append(json.loads(line))
    return found


async def test_killed_subscriber_restarted_after_1000_revocations_holds_them_all(  # noqa: PLR0917
    store: EventStore, pool: asyncpg.Pool, backend: Backend, nats_names: NatsNames,
    server: Server, feed: str, tmp_path: Path,
) -> None:  # fmt: skip
    """`authledger subscribe --state` SIGKILLed, 1,000 revocations made meanwhile, started
    again: it resumes from its checkpoint (no resync needed) and its set holds all 1,010."""
    state = tmp_path / "subscriber.db"
    proc = await subscribe_process(server, nats_names, backend, state)
    try:
        before = await revoked(store, pool, feed, 10)
        assert {e["credential_id"] for e in await lines(proc, 10, 30)} == {
            i.credential_id for i in before}  # fmt: skip
    finally:
        proc.kill()
        await proc.wait()
    away = await revoked(store, pool, feed, 1000)
    proc = await subscribe_process(server, nats_names, backend, state)
    try:
        printed = await lines(proc, 1000, 120)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert {e["credential_id"] for e in printed} == {i.credential_id for i in away}
    positions = [int(e["position"]) for e in printed]
    assert positions == sorted(positions)  # in log order (and none twice: 1,000 distinct)
    assert {e["source"] for e in printed} == {"feed"}
    assert "gap" not in err.decode()
    held = RevocationSubscriber(config_for(backend, nats_names, server, state))
    assert len(held) == 1010
    assert all(held.is_revoked(item.token) for item in before + away)
    live = await issue(store, 1)
    assert not held.is_revoked(live[0].token)


async def test_stream_purged_while_away_is_detected_and_resynchronised(  # noqa: PLR0917
    store: EventStore, pool: asyncpg.Pool, backend: Backend, nats_names: NatsNames,
    server: Server, feed: str, js: JetStreamContext, tmp_path: Path,
) -> None:  # fmt: skip
    """Revocations made while the subscriber was stopped, then the stream purged: at restart
    it sees the stream begins past its checkpoint, fetches the 20 it missed from
    /admin/revocations, and then follows the feed again."""
    config = config_for(backend, nats_names, server, tmp_path / "state.db")
    first = RevocationSubscriber(config)
    async with following(first):
        before = await revoked(store, pool, feed, 5)
        await wait_until(lambda: len(first) == 5, within=30, what="len(first) == 5")
    away = await revoked(store, pool, feed, 20)
    await js.purge_stream(nats_names.stream)
    sub = RevocationSubscriber(config)
    async with following(sub):
        await wait_until(lambda: len(sub) == 25, within=30, what="len(sub) == 25")
        assert (sub.stats.gaps, sub.stats.resyncs, sub.stats.received) == (1, 1, 0)
        after = await revoked(store, pool, feed, 3)
        await wait_until(lambda: len(sub) == 28, within=30, what="len(sub) == 28")
        assert (sub.stats.gaps, sub.stats.resyncs, sub.stats.received) == (1, 1, 3)
        assert sub.in_sync
    assert all(sub.is_revoked(i.token) for i in before + away + after)


async def test_a_message_missing_from_the_middle_breaks_the_chain(  # noqa: PLR0917
    store: EventStore, pool: asyncpg.Pool, backend: Backend, nats_names: NatsNames,
    server: Server, feed: str, js: JetStreamContext,
) -> None:  # fmt: skip
    """One message deleted from the stream: the next one's previous position gives it away.
    With the admin token the subscriber resynchronises and holds all five; without it, it
    says it is out of sync (never silently)."""
    items = []
    for _ in range(5):
        items += await revoked(store, pool, feed, 1)
    third = (await revocation_messages(js, nats_names))[2]
    await js.delete_msg(nats_names.stream, third.metadata.sequence.stream)
    repaired = RevocationSubscriber(config_for(backend, nats_names, server, None))
    blind = RevocationSubscriber(config_for(backend, nats_names, server, None, token=False))
    async with following(repaired), following(blind):
        await wait_until(
            lambda: len(repaired) == 5 and len(blind) == 4,
            within=30,
            what="len(repaired) == 5 and len(blind) == 4",
        )
        await asyncio.wait_for(repaired.caught_up.wait(), 10)
        await asyncio.wait_for(blind.caught_up.wait(), 10)
        assert (repaired.stats.gaps, repaired.stats.resyncs, repaired.in_sync) == (1, 1, True)
        assert (blind.stats.gaps, blind.stats.unresolved, blind.in_sync) == (1, 1, False)
    assert all(repaired.is_revoked(i.token) for i in items)
    assert not blind.is_revoked(items[2].token)


async def test_tampered_and_forged_messages_are_rejected(  # noqa: PLR0917
    store: EventStore, pool: asyncpg.Pool, backend: Backend, nats_names: NatsNames,
    server: Server, feed: str, js: JetStreamContext,
) -> None:  # fmt: skip
    """A genuine message with another credential id in it, one signed by a stranger under the
    service's kid, and junk: none is applied; each makes the subscriber check the
    authoritative list; genuine revocations go on being applied."""
    genuine = await revoked(store, pool, feed, 2)
    sub = RevocationSubscriber(config_for(backend, nats_names, server, None))
    victim = (await issue(store, 1))[0]
    async with following(sub):
        await wait_until(lambda: len(sub) == 2, within=30, what="len(sub) == 2")
        real = (await revocation_messages(js, nats_names))[0]
        head, _, signature = real.data.decode().split(".")
        claims = unverified(real.data)
        other = replace(claims, credential_id=victim.credential_id, position=10_000,
                        token_hash_prefix=victim.token_hash[:16])  # fmt: skip
        _, forged_body, _ = sign(other, Ed25519PrivateKey.generate(), "x").split(".")
        stranger = sign(other, Ed25519PrivateKey.generate(), key_id(real.data))
        where = subject(nats_names.subject_prefix, "default")
        for data in (f"{head}.{forged_body}.{signature}".encode(), stranger.encode(), b"junk"):
            await js.publish(where, data, stream=nats_names.stream)
        more = await revoked(store, pool, feed, 1)
        await wait_until(
            lambda: len(sub) == 3 and sub.stats.rejected == 3,
            within=30,
            what="len(sub) == 3 and sub.stats.rejected == 3",
        )
        assert (sub.stats.resyncs, sub.stats.gaps, sub.in_sync) == (3, 3, True)
    assert not sub.is_revoked(victim.token)
    assert not sub.is_revoked_credential(victim.credential_id)
    assert all(sub.is_revoked(i.token) for i in genuine + more)
