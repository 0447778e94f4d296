"""Security finding 3 (issue 12), the verification half: someone with the database password
(here the test's superuser, the guards switched off) cuts the log's tail and deletes the
checkpoint rows that anchored it, or forges a key of their own into the checkpoint keys, or
swaps the public part of a signing key. Each is caught by what the database cannot rewrite:
the checkpoint published to a JetStream stream that refuses deletes and purges, the keys the
auditor pinned, and public keys derived from the sealed private keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError
from structlog.testing import capture_logs

from events.clock import ManualClock
from events.store import NO_STREAM, EventStore
from service.audit.published import CheckpointStream, read_published
from service.audit.publisher import Publisher
from service.audit.signed import sign
from service.audit.verify import verify
from service.crypto.signing import KeyRing, public_jwk
from tests.support.audit import checkpoint_stream, nats_env, pin_keys, pinned_keys, run_authledger
from tests.support.backends import Backend, with_database
from tests.support.builders import a_stream, opened
from tests.support.nats import NatsNames
from tests.support.relay_support import jetstream
from tests.support.serve_process import SECRETS, authledger_env
from workers.checkpoints import CheckpointConfig, CheckpointWorker

SECRET = SECRETS["AUTHLEDGER_SECRET_KEY"]  # the CLI's, so `audit keys` opens the same keys
MESSAGE_DELETE_NOT_PERMITTED, PURGE_NOT_PERMITTED, CANNOT_CANCEL_DENY = 10057, 10110, 10052


@pytest.fixture
async def where(backend: Backend, nats_names: NatsNames) -> AsyncIterator[CheckpointStream]:
    """The test's own checkpoint stream, deleted at the end (a stream as a whole can be)."""
    names = checkpoint_stream(nats_names)
    async with jetstream(backend.nats_url, delete=names.stream):
        yield names


@pytest.fixture
async def publisher(backend: Backend, where: CheckpointStream) -> AsyncIterator[Publisher]:
    created = Publisher(backend.nats_url, where)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def ring(pool: asyncpg.Pool, clock: ManualClock) -> KeyRing:
    created = KeyRing(SECRET)
    await created.ensure_active(pool, clock.now())
    return created


def signer(
    pool: asyncpg.Pool, ring: KeyRing, clock: ManualClock, publisher: Publisher
) -> CheckpointWorker:
    config = CheckpointConfig(every=5)
    return CheckpointWorker(pool, ring, config=config, clock=clock, publisher=publisher)


async def _fill(store: EventStore, n: int) -> None:
    for i in range(n):
        await store.append(a_stream(), NO_STREAM, [opened(f"event {i}")])


@pytest.fixture
async def superuser(backend: Backend, database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The attacker: the cluster's superuser on this test's database (the service's own role
    can do none of this, tests/security/test_runtime_role_rewrites_history.py)."""
    name = urlsplit(database_url).path.lstrip("/")
    created = await asyncpg.create_pool(
        with_database(backend.database_url, name), min_size=1, max_size=2
    )
    try:
        yield created
    finally:
        await created.close()


async def _as_superuser(pool: asyncpg.Pool, *statements: str) -> None:
    """What the database password allows today: every trigger off, then the damage."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement)


async def test_a_cut_tail_with_its_checkpoints_deleted_is_caught_by_the_published_checkpoint(  # noqa: PLR0917
    store: EventStore,
    pool: asyncpg.Pool,
    ring: KeyRing,
    clock: ManualClock,
    backend: Backend,
    nats_names: NatsNames,
    where: CheckpointStream,
    publisher: Publisher,
    database_url: str,
    superuser: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    """Events 8..12 and every checkpoint row deleted: the chain left is whole and the database
    holds nothing past 7, but the checkpoint published at 12 is past the head: BROKEN, exit 1.
    Appending again over the cut does not hide it (the hash at 12 differs), and the signer
    refuses to sign or publish a log that contradicts what it published."""
    worker = signer(pool, ring, clock, publisher)
    await _fill(store, 12)
    assert [c.position for c in await worker.run_once(force=True)] == [5, 10, 12]
    assert (worker.stats.published, worker.stats.published_position) == (3, 12)
    pinned = await pinned_keys(pool, SECRET)
    published = await read_published(backend.nats_url, where)
    before = await verify(pool, trusted_keys=pinned, published=published)
    assert (before.verdict, before.anchored, before.published and before.published.held) == (
        "verified",
        12,
        True,
    )

    await _as_superuser(
        superuser, "DELETE FROM events WHERE position > 7", "DELETE FROM chain_checkpoints"
    )
    published = await read_published(backend.nats_url, where)
    report = await verify(pool, trusted_keys=pinned, published=published)
    assert report.first_break is not None
    assert report.first_break.line() == (
        "position 8: published checkpoint at position 12 is past the head 7: "
        "events 8..12 were deleted"
    )
    assert report.verdict == "broken"

    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, **SECRETS, **nats_env(backend.nats_url, nats_names)
    )
    keys = await pin_keys(env, tmp_path / "pinned.jwks")
    status, out, err = await run_authledger(["audit", "verify", "--keys", str(keys)], env)
    assert status == 1, (out, err)
    assert out.startswith("BROKEN at position 8: 7 events checked up to position 7")
    assert out.splitlines()[1] == (
        "  position 8: published checkpoint at position 12 is past the head 7: "
        "events 8..12 were deleted"
    )

    await _fill(store, 8)  # the log grows past 12 again, over the cut
    clock.advance(timedelta(hours=1))
    assert await worker.run_once(force=True) == []
    assert worker.stats.contradicted >= 1
    published = await read_published(backend.nats_url, where)
    report = await verify(pool, trusted_keys=pinned, published=published)
    assert report.first_break is not None
    assert report.first_break.line() == (
        "position 12: the chain at position 12 differs from the checkpoint signed there: "
        "events 1..12 were rewritten (their hashes recomputed)"
    )
    assert report.published is not None
    assert (report.published.position, report.published.held) == (12, False)


async def test_the_checkpoint_stream_refuses_delete_and_purge(  # noqa: PLR0917
    store: EventStore,
    pool: asyncpg.Pool,
    ring: KeyRing,
    clock: ManualClock,
    backend: Backend,
    where: CheckpointStream,
    publisher: Publisher,
) -> None:
    """The worker makes the stream with deny_delete and deny_purge: deleting a checkpoint,
    purging the stream and cancelling either flag are refused by the NATS API."""
    await _fill(store, 5)
    await signer(pool, ring, clock, publisher).run_once(force=True)
    async with jetstream(backend.nats_url) as js:
        info = await js.stream_info(where.stream)
        assert (info.config.deny_delete, info.config.deny_purge, info.state.messages) == (
            True,
            True,
            1,
        )
        with pytest.raises(APIError) as deleting:
            await js.delete_msg(where.stream, 1)
        assert deleting.value.err_code == MESSAGE_DELETE_NOT_PERMITTED
        with pytest.raises(APIError) as purging:
            await js.purge_stream(where.stream)
        assert purging.value.err_code == PURGE_NOT_PERMITTED
        lax = StreamConfig(
            name=where.stream, subjects=[where.subject], storage=StorageType.FILE
        )  # deny_delete and deny_purge off
        with pytest.raises(APIError) as relaxing:
            await js.update_stream(lax)
        assert relaxing.value.err_code == CANNOT_CANCEL_DENY
        assert (await js.stream_info(where.stream)).state.messages == 1


async def test_a_stream_that_allows_deletes_is_not_an_anchor(  # noqa: PLR0917
    store: EventStore,
    pool: asyncpg.Pool,
    ring: KeyRing,
    clock: ManualClock,
    backend: Backend,
    where: CheckpointStream,
    publisher: Publisher,
) -> None:
    """A stream someone made beforehand without the flags: nothing is published to it (logged
    `checkpoints.stream_unsafe`), and verify will not vouch with it."""
    async with jetstream(backend.nats_url) as js:
        await js.add_stream(
            StreamConfig(name=where.stream, subjects=[where.subject], storage=StorageType.FILE)
        )
    await _fill(store, 5)
    worker = signer(pool, ring, clock, publisher)
    with capture_logs() as logs:
        assert [c.position for c in await worker.run_once(force=True)] == [5]
    assert worker.stats.published == 0
    assert any(entry["event"] == "checkpoints.stream_unsafe" for entry in logs)
    published = await read_published(backend.nats_url, where)
    report = await verify(pool, trusted_keys=await pinned_keys(pool, SECRET), published=published)
    assert report.verdict == "unvouched"
    assert any("allows deleting messages (deny_delete is off)" in r for r in report.unvouched)


async def test_a_forged_checkpoint_key_is_refused_by_the_pinned_keys(  # noqa: PLR0917
    store: EventStore,
    pool: asyncpg.Pool,
    ring: KeyRing,
    clock: ManualClock,
    backend: Backend,
    nats_names: NatsNames,
    publisher: Publisher,
    database_url: str,
    superuser: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    """Checkpoints 5 and 10 signed and published; then event 12 (not yet anchored) deleted,
    the checkpoint rows deleted, a key of the attacker's written into chain_checkpoint_keys
    and a checkpoint at the new head 11 signed with it. Against the database's keys it all
    verifies, so without pinned keys `audit verify` does not vouch (exit 3); against the
    pinned keys the forged checkpoint is not vouched for either (exit 3). The attacker's key
    under the real kid instead: the signature fails, BROKEN (exit 1)."""
    await _fill(store, 12)
    assert [c.position for c in await signer(pool, ring, clock, publisher).run_once()] == [5, 10]
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, **SECRETS, **nats_env(backend.nats_url, nats_names)
    )
    keys = await pin_keys(env, tmp_path / "pinned.jwks")
    [real] = ring.keys

    attacker = Ed25519PrivateKey.generate()
    forged = public_jwk(attacker)
    await _as_superuser(
        superuser, "DELETE FROM events WHERE position > 11", "DELETE FROM chain_checkpoints"
    )
    head_hash = await pool.fetchval("SELECT hash FROM events WHERE position = 11")
    checkpoint = sign(
        private_key=attacker, kid=forged["kid"], position=11, chain_hash=head_hash, at=clock.now()
    )
    await _forge(superuser, forged["kid"], forged, checkpoint.jws, head_hash)

    trusting = await verify(pool)  # the keys read from the database being checked
    assert (trusting.problems, trusting.checkpoints, trusting.anchored) == ([], 1, 11)
    status, out, _ = await run_authledger(["audit", "verify"], env)  # so it does not vouch
    assert status == 3, out
    assert out.startswith("unvouched: 11 events checked up to position 11")
    assert "published: position 10 holds" in out.splitlines()[0]
    status, out, _ = await run_authledger(["audit", "verify", "--keys", str(keys)], env)
    assert status == 3, out
    assert out.startswith("unvouched: 11 events checked up to position 11")
    assert f"signed by key {forged['kid']}, which is not pinned" in out
    assert "0 signed checkpoint(s) hold (keys: pinned), anchored up to position 10" in out

    under_real_kid = sign(
        private_key=attacker, kid=real.kid, position=11, chain_hash=head_hash, at=clock.now()
    )
    await _as_superuser(
        superuser, "DELETE FROM chain_checkpoints", "DELETE FROM chain_checkpoint_keys"
    )
    await _forge(superuser, real.kid, {**forged, "kid": real.kid}, under_real_kid.jws, head_hash)
    assert (await verify(pool)).problems == []
    status, out, _ = await run_authledger(["audit", "verify", "--keys", str(keys)], env)
    assert status == 1, out
    assert out.splitlines()[1] == (
        "  position 11: checkpoint at position 11: signature does not verify"
    )


async def _forge(
    pool: asyncpg.Pool, kid: str, jwk: dict[str, str], jws: str, chain_hash: bytes
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "INSERT INTO chain_checkpoint_keys (kid, public_jwk, first_used) "
            "VALUES ($1, $2::text::json, now()) ON CONFLICT (kid) DO NOTHING",
            kid,
            json.dumps(jwk),
        )
        await conn.execute(
            "INSERT INTO chain_checkpoints (position, chain_hash, kid, signed_at, jws) "
            "VALUES (11, $1, $2, now(), $3)",
            chain_hash,
            kid,
            jws,
        )


async def test_a_public_key_column_that_is_not_the_private_keys_is_not_published(
    pool: asyncpg.Pool,
    ring: KeyRing,
    clock: ManualClock,
    database_url: str,
    superuser: asyncpg.Pool,
) -> None:
    """The attacker's public key written over the active key's `public_jwk` (same kid), so
    that tokens they sign would check against our JWKS: the ring derives the public key from
    the sealed private key, refuses the row loudly, and neither the JWKS nor `audit keys`
    carries the attacker's key."""
    [real] = ring.keys
    attacker = {**public_jwk(Ed25519PrivateKey.generate()), "kid": real.kid}
    published = ring.jwks(clock.now(), timedelta(hours=1))["keys"]
    assert [k["x"] for k in published] == [real.public_jwk["x"]]
    await _as_superuser(
        superuser,
        f"UPDATE signing_keys SET public_jwk = '{json.dumps(attacker)}'::json "
        f"WHERE kid = '{real.kid}'",
    )
    reloaded = KeyRing(SECRET)
    with capture_logs() as logs:
        await reloaded.load(pool)
    assert reloaded.keys == []
    assert reloaded.jwks(clock.now(), timedelta(hours=1)) == {"keys": []}
    [refused] = [e for e in logs if e["event"] == "signing.public_key_mismatch"]
    assert (refused["kid"], refused["log_level"]) == (real.kid, "error")

    env = authledger_env(AUTHLEDGER_DATABASE_URL=database_url, **SECRETS)
    status, out, err = await run_authledger(["audit", "keys"], env)
    assert status == 0, err
    assert attacker["x"] not in out
    assert json.loads(out) == {"keys": []}
    assert "signing.public_key_mismatch" in err
