"""The revocation feed publisher (log -> signed messages on `<prefix>.<tenant>.revocations`)
against real Postgres and NATS."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import jwt
import pytest
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from events.envelope import StreamRef
from events.ledger import LEDGER
from events.store import EventStore
from events.tenant import TenantCreated
from projections.runner import project
from service.crypto.signing import KeyRing
from service.dev.embedded import EmbeddedNats, free_port
from service.revocations.log import ENDING
from service.settings import Settings
from service.tenancy.directory import TenantDirectory
from subscriber.wire import (
    MSG_ID_HEADER,
    POSITION_HEADER,
    TYP,
    Revocation,
    public_keys,
    subject,
    verify,
)
from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.relay_support import (
    WAIT,
    append_events,
    fast_config,
    jetstream,
    published_through,
    running,
    wait_for_checkpoint,
)
from tests.support.revocations import (
    ISSUER,
    NOW,
    SECRET_KEY,
    FeedProcess,
    end,
    fast_feed_config,
    feed_checkpoint,
    issue,
    publisher,
    publishing,
    rescope,
    revocation_messages,
    wait_published,
)
from workers.feed import POSITION_HEADER as RELAY_POSITION_HEADER
from workers.relay import Relay
from workers.revocation_feed import RevocationPublisher

CHECKPOINT_OF = "revocations:{}"


@pytest.fixture
async def js(backend: Backend, nats_names: NatsNames) -> AsyncIterator[JetStreamContext]:
    """JetStream on the suite's NATS; this test's stream is deleted afterwards."""
    async with jetstream(backend.nats_url, delete=nats_names.stream) as context:
        yield context


async def keys_of(pool: asyncpg.Pool) -> KeyRing:
    ring = KeyRing(SECRET_KEY)
    await ring.ensure_active(pool, NOW)
    return ring


async def ending_positions(pool: asyncpg.Pool) -> list[tuple[int, str, str]]:
    """(position, event id, tenant) of every ending event of the log, in order."""
    rows = await pool.fetch(
        "SELECT position, event_id::text, tenant_id FROM events WHERE type = ANY($1)"
        " ORDER BY position",
        list(ENDING),
    )
    return [(r["position"], r["event_id"], r["tenant_id"]) for r in rows]


async def assert_published_once(
    js: JetStreamContext, names: NatsNames, pool: asyncpg.Pool, ring: KeyRing
) -> list[Revocation]:
    """The stream holds one verifiable message per ending event, in log order."""
    messages = await revocation_messages(js, names)
    keys = public_keys(ring.jwks(NOW, timedelta(hours=1)))
    claims = [verify(m.data, keys) for m in messages]
    expected = await ending_positions(pool)
    assert [c.position for c in claims] == [p for p, _, _ in expected]
    assert [m.headers[MSG_ID_HEADER] for m in messages if m.headers] == [
        f"{event_id}:revocation" for _, event_id, _ in expected
    ]
    assert [m.subject for m in messages] == [
        subject(names.subject_prefix, tenant) for _, _, tenant in expected
    ]
    return claims


async def test_each_ending_event_is_published_once_signed_with_its_fields_in_log_order(
    store: EventStore, pool: asyncpg.Pool, backend: Backend, js: JetStreamContext,
    nats_names: NatsNames,
) -> None:  # fmt: skip
    """Revocations and expiries of two tenants, among other events, become one message
    each: subject, headers, fields, chain, and a signature the JWKS verifies (PyJWT too)."""
    ring = await keys_of(pool)
    keys = await issue(store, 3)
    token = (await issue(store, 1, kind="access_token", user=True))[0]
    others = await issue(store, 2, tenant="acme")
    claimed = await rescope(store, keys[2], "usr_claimed")
    await append_events(store, 7)  # events of no interest, between
    await end(store, [keys[0]])
    await end(store, [token], expire=True)
    await end(store, others, reason="logout")
    await end(store, [claimed])
    feed = publisher(pool, backend.nats_url, nats_names)
    async with publishing(feed):
        await wait_published(pool, feed.config.checkpoint_name)
    claims = await assert_published_once(js, nats_names, pool, ring)
    assert (feed.stats.published, feed.stats.skipped, feed.stats.deduplicated) == (5, 0, 0)
    by_id = {c.credential_id: c for c in claims}
    first = by_id[keys[0].credential_id]
    assert (first.tenant, first.reason, first.credential_kind, first.jti) == (
        "default", "revoked:operator", "api_key", None)  # fmt: skip
    assert first.token_hash_prefix == keys[0].token_hash[:16]
    assert (first.registration_id, first.user_id, first.iss) == (keys[0].registration_id, None,
                                                                 ISSUER)  # fmt: skip
    expired = by_id[token.credential_id]
    assert (expired.reason, expired.credential_kind) == ("expired", "access_token")
    assert (expired.jti, expired.user_id) == (token.credential_id, token.user_id)
    assert by_id[claimed.credential_id].user_id == "usr_claimed"
    assert {by_id[o.credential_id].reason for o in others} == {"revoked:logout"}
    assert {by_id[o.credential_id].tenant for o in others} == {"acme"}
    assert first.effective_at == NOW + timedelta(minutes=5)
    for tenant in ("default", "acme"):
        mine = [c for c in claims if c.tenant == tenant]
        assert [c.previous_position for c in mine] == [0] + [c.position for c in mine[:-1]]
    raw = (await revocation_messages(js, nats_names))[0]
    assert raw.headers is not None
    assert raw.headers[POSITION_HEADER] == str(claims[0].position)
    assert RELAY_POSITION_HEADER not in raw.headers  # the relay's scan ignores these
    header = jwt.get_unverified_header(raw.data)
    assert (header["typ"], header["alg"], header["kid"]) == (TYP, "EdDSA", ring.active.kid)  # type: ignore[union-attr]
    key = ring.active.private_key.public_key()  # type: ignore[union-attr]
    decoded = jwt.decode(raw.data, key, algorithms=["EdDSA"])
    assert decoded["credential_id"] == claims[0].credential_id


async def test_no_duplicate_after_crash_between_ack_and_checkpoint_past_dedupe_window(
    store: EventStore, pool: asyncpg.Pool, backend: Backend, js: JetStreamContext,
    nats_names: NatsNames,
) -> None:  # fmt: skip
    """With a 1 s dedupe window long gone, a checkpoint left behind its acked messages (as a
    crash between ack and checkpoint leaves it) causes no duplicate: the scan of the
    revocation subjects from the checkpoint's sequence skips what is stored."""
    ring = await keys_of(pool)
    await js.add_stream(StreamConfig(name=nats_names.stream,
                                     subjects=[f"{nats_names.subject_prefix}.>"],
                                     storage=StorageType.FILE, duplicate_window=1.0))  # fmt: skip
    items = await issue(store, 40)
    await end(store, items)
    name = CHECKPOINT_OF.format(nats_names.stream)
    async with publishing(publisher(pool, backend.nats_url, nats_names)):
        await wait_published(pool, name)
    positions = [p for p, _, _ in await ending_positions(pool)]
    seqs = [m.metadata.sequence.stream for m in await revocation_messages(js, nats_names)]
    for (position, seq), skipped in (((positions[19], seqs[19]), 20), ((0, 0), 40 + 5)):
        await pool.execute("UPDATE checkpoints SET position = $2 WHERE name = $1", name, position)
        await pool.execute("UPDATE checkpoints SET position = $2 WHERE name = $1 || ':seq'",
                           name, seq)  # fmt: skip
        await asyncio.sleep(1.2)  # past the dedupe window
        more = await issue(store, 5)
        await end(store, more)
        feed = publisher(pool, backend.nats_url, nats_names)
        async with publishing(feed):
            await wait_published(pool, name)
        await assert_published_once(js, nats_names, pool, ring)
        assert (feed.stats.skipped, feed.stats.published, feed.stats.deduplicated) == (
            skipped, 5, 0)  # fmt: skip


async def test_sigkill_and_restart_three_times_loses_and_repeats_nothing(  # noqa: PLR0917
    store: EventStore, pool: asyncpg.Pool, backend: Backend, database_url: str,
    js: JetStreamContext, nats_names: NatsNames, tmp_path: Path,
) -> None:  # fmt: skip
    """A publisher process SIGKILLed three times while 1,000 revocations are being published
    (and more keep coming) leaves every revocation in the stream exactly once, in order."""
    ring = await keys_of(pool)
    await js.add_stream(StreamConfig(name=nats_names.stream,
                                     subjects=[f"{nats_names.subject_prefix}.>"],
                                     storage=StorageType.FILE, duplicate_window=1.0))  # fmt: skip
    name, log = CHECKPOINT_OF.format(nats_names.stream), tmp_path / "feed.log"
    backlog = await issue(store, 1000)
    await end(store, backlog)
    later = await issue(store, 200)

    async def write() -> None:
        for start in range(0, 200, 10):
            await end(store, later[start : start + 10])
            await asyncio.sleep(0.02)  # the pace of the revocations is the test's load

    writer = asyncio.create_task(write())
    try:
        for delay in (0.0, 0.004, 0.011):
            reached = (await feed_checkpoint(pool, name))[0]
            process = FeedProcess.start(database_url, backend.nats_url, nats_names, log)
            try:
                await wait_for_checkpoint(pool, name, reached + 1, poll=0.001)
                await asyncio.sleep(delay)  # where in its window the kill lands
            finally:
                process.kill()
        await writer
        process = FeedProcess.start(database_url, backend.nats_url, nats_names, log)
        try:
            await wait_published(pool, name)
        finally:
            process.kill()
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    assert log.read_text().count("revocation_feed.lock_acquired") == 4
    claims = await assert_published_once(js, nats_names, pool, ring)
    assert len(claims) == 1200
    assert [c.previous_position for c in claims[1:]] == [c.position for c in claims[:-1]]


async def test_nats_outage_keeps_revocations_going_and_publishes_them_once_after(
    store: EventStore, pool: asyncpg.Pool, nats_names: NatsNames, tmp_path: Path
) -> None:
    """With NATS stopped, revocations still succeed and the publisher retries without
    crashing; once NATS is back every revocation is published exactly once."""
    ring = await keys_of(pool)
    folder, port = tmp_path / "nats", free_port()
    server = await asyncio.to_thread(EmbeddedNats.start, folder, port=port)
    feed = publisher(pool, server.url, nats_names)
    name = feed.config.checkpoint_name
    try:
        async with publishing(feed) as task, jetstream(server.url) as js:
            first = await issue(store, 20)
            await end(store, first)
            await wait_published(pool, name)
            await asyncio.to_thread(server.stop)
            during = await issue(store, 30)
            await end(store, during)  # the log never waits for NATS
            head = int(await pool.fetchval("SELECT max(position) FROM events"))
            await asyncio.wait_for(feed.wait_for(lambda s: s.retries > 0), WAIT)
            assert not task.done()
            assert (await feed_checkpoint(pool, name))[0] < head
            server = await asyncio.to_thread(EmbeddedNats.start, folder, port=port)
            await wait_published(pool, name, head, within=30)
            assert not task.done()
            assert len(await assert_published_once(js, nats_names, pool, ring)) == 50
            stats = feed.stats  # a message stored whose ack was lost is found by the scan
            assert stats.published + stats.deduplicated + stats.skipped == 50
    finally:
        await asyncio.to_thread(server.stop)


async def test_relay_and_feed_share_the_stream_without_confusing_each_others_scans(
    store: EventStore, pool: asyncpg.Pool, backend: Backend, js: JetStreamContext,
    nats_names: NatsNames,
) -> None:  # fmt: skip
    """Both publish into one stream; restarted from a checkpoint of 0, the relay's tail scan
    finds exactly its own messages (skipping the revocations between) and the feed's scan
    exactly its own: nothing is published twice by either."""
    ring = await keys_of(pool)
    relay_config = fast_config(nats_names)
    items = await issue(store, 30)
    await append_events(store, 20)
    await end(store, items)
    name = CHECKPOINT_OF.format(nats_names.stream)
    async with running(relay := Relay(pool, backend.nats_url, relay_config)), publishing(
        publisher(pool, backend.nats_url, nats_names)
    ):  # fmt: skip
        head = await wait_published(pool, name)
        await published_through(relay, head)
    await pool.execute("UPDATE checkpoints SET position = 0")
    relay, feed = Relay(pool, backend.nats_url, relay_config), publisher(pool, backend.nats_url,
                                                                         nats_names)  # fmt: skip
    async with running(relay), publishing(feed):
        await published_through(relay, head)
        await published_through(feed, head)
    assert (relay.stats.skipped, relay.stats.published, relay.stats.deduplicated) == (head, 0, 0)
    assert (feed.stats.skipped, feed.stats.published, feed.stats.deduplicated) == (30, 0, 0)
    await assert_published_once(js, nats_names, pool, ring)
    everything = await stored_messages_of_relay(js, nats_names)
    assert Counter(everything) == Counter(range(1, head + 1))


async def stored_messages_of_relay(js: JetStreamContext, names: NatsNames) -> list[int]:
    """The log positions of the relay's messages (those with its position header)."""
    info = await js.stream_info(names.stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(names.stream, seq)
        headers = msg.headers or {}
        if RELAY_POSITION_HEADER in headers:
            found.append(int(headers[RELAY_POSITION_HEADER]))
    return found


async def test_a_second_publisher_waits_for_the_lock(  # noqa: PLR0917
    store: EventStore, pool: asyncpg.Pool, database_url: str, backend: Backend,
    js: JetStreamContext, nats_names: NatsNames,
) -> None:  # fmt: skip
    """Only one publisher publishes; the second holds back until the first stops, then goes
    on from its checkpoint."""
    ring = await keys_of(pool)
    other_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    first, second = publisher(pool, backend.nats_url, nats_names), publisher(
        other_pool, backend.nats_url, nats_names)  # fmt: skip
    try:
        async with publishing(first) as first_task:
            await asyncio.wait_for(first.wait_for(lambda s: s.holding_lock), WAIT)
            async with publishing(second):
                items = await issue(store, 10)
                await end(store, items)
                await wait_published(pool, first.config.checkpoint_name)
                assert not second.stats.holding_lock
                first_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await first_task
                await asyncio.wait_for(second.wait_for(lambda s: s.holding_lock), WAIT)
                more = await issue(store, 5)
                await end(store, more)
                await wait_published(pool, first.config.checkpoint_name)
        assert (first.stats.published, second.stats.published) == (10, 5)
        assert second.stats.skipped == 0
        await assert_published_once(js, nats_names, pool, ring)
    finally:
        await other_pool.close()


async def test_each_tenants_messages_carry_its_issuer_and_its_own_signing_key(
    store: EventStore, pool: asyncpg.Pool, backend: Backend, js: JetStreamContext,
    nats_names: NatsNames,
) -> None:  # fmt: skip
    """With the tenant directory (as `authledger worker` runs it), a tenant's subscriber
    verifies its messages with that tenant's own JWKS and issuer."""
    acme_url = "https://auth.acme.example"
    created = TenantCreated(tenant_id="acme", hosts=("auth.acme.example",),
                            settings={"public_url": acme_url})  # fmt: skip
    await store.append(StreamRef("acme", "tenant", "ten_acme"), 0,
                       [LEDGER.new(created, occurred_at=NOW)], projector=project)  # fmt: skip
    base = Settings.from_env(
        {"AUTHLEDGER_DATABASE_URL": "postgresql://db/x", "AUTHLEDGER_NATS_URL": backend.nats_url,
         "AUTHLEDGER_SECRET_KEY": SECRET_KEY, "AUTHLEDGER_PUBLIC_URL": ISSUER}, "worker",
    )  # fmt: skip
    theirs, ours = await issue(store, 1, tenant="acme"), await issue(store, 1)
    await end(store, [*theirs, *ours])
    config = fast_feed_config(nats_names)
    feed = RevocationPublisher(
        pool, backend.nats_url, KeyRing(SECRET_KEY), config, tenants=TenantDirectory(base)
    )
    async with publishing(feed):
        await wait_published(pool, feed.config.checkpoint_name)
    default_ring, acme_ring = KeyRing(SECRET_KEY), KeyRing(SECRET_KEY, "acme")
    await default_ring.load(pool)
    await acme_ring.load(pool)
    by_tenant = {}
    for message in await revocation_messages(js, nats_names):
        claims = jwt.decode(message.data, options={"verify_signature": False})
        by_tenant[claims["tenant"]] = (
            claims["iss"],
            jwt.get_unverified_header(message.data)["kid"],
        )
    assert by_tenant["acme"] == (acme_url, acme_ring.active.kid)  # type: ignore[union-attr]
    assert by_tenant["default"] == (ISSUER, default_ring.active.kid)  # type: ignore[union-attr]
    assert acme_ring.active.kid != default_ring.active.kid  # type: ignore[union-attr]
