"""Exports of audit slices with their proof, checked offline by the file alone: anchored by
the checkpoint worker's signatures (or by one signed on the spot), unanchored otherwise, and
never able to pass off an event edited in the database, even with the chain recomputed."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from events.clock import ManualClock
from events.hashchain import event_hash
from events.store import EventStore, row_to_event
from service.audit.check import check
from service.audit.export import export
from service.audit.signing_round import sign_now
from service.audit.subjects import Bound, resolve
from service.audit.verify import Q
from service.commands.context import Caller, Context
from service.commands.registration import register_anonymous
from service.commands.revocation import revoke
from tests.support.commands import command_context
from workers.checkpoints import CheckpointConfig, CheckpointWorker

AGENT = Caller(request_id="req-1", client_ip="203.0.113.9")
OPERATOR = Caller(request_id="req-op", actor="admin")


@pytest.fixture
async def ctx(store: EventStore, pool: asyncpg.Pool) -> Context:
    return await command_context(store, pool)


async def _history(ctx: Context, n: int) -> list[str]:
    """n anonymous registrations (2 events each); returns their keys' credential ids."""
    for _ in range(n):
        await register_anonymous(ctx, "api_key", AGENT)
    rows = await ctx.pool.fetch("SELECT credential_id FROM credentials ORDER BY issued_at")
    return [r[0] for r in rows]


async def _export(ctx: Context, kind: str, subject_id: str, *, anchor: bool = False) -> str:
    async def signer() -> object:
        return await sign_now(ctx.pool, ctx.keyring, ctx.clock)

    async with ctx.pool.acquire() as conn:
        subject = await resolve(conn, ctx.tenant.tenant_id, kind, subject_id)
        lines = export(
            conn, subject, Bound(), now=ctx.clock.now(), sign_now=signer if anchor else None
        )
        return "".join([line async for line in lines])


def _public_jwks(ctx: Context) -> dict[str, list[dict[str, str]]]:
    """What /.well-known/jwks.json publishes: the auditor's "public key"."""
    return ctx.keyring.jwks(ctx.clock.now(), timedelta(hours=1))


async def test_a_slice_between_checkpoints_verifies_offline(ctx: Context) -> None:
    keys = await _history(ctx, 12)
    target = keys[4]
    await revoke(ctx, "credential", target, OPERATOR, "found in a log")
    await _history(ctx, 3)
    worker = CheckpointWorker(ctx.pool, ctx.keyring, config=CheckpointConfig(every=5))
    assert [c.position for c in await worker.run_once()] == [5, 10, 15, 20, 25, 30]
    content = await _export(ctx, "credential", target)
    header = content.splitlines()[0]
    assert '"anchored":true' in header
    assert '"runs":[{"from":6,"to":10,"after_checkpoint":5,"checkpoint":10},' in header
    report = check(content, trusted_jwks=_public_jwks(ctx))
    assert (report.verdict, report.events, report.keys) == ("verified", 3, "trusted JWKS")
    assert len(content.splitlines()) < 30  # the proof covers two runs, not the whole log


async def test_newest_events_are_unanchored_unless_a_checkpoint_is_signed_now(
    ctx: Context,
) -> None:
    [first, *_] = await _history(ctx, 3)
    assert check(await _export(ctx, "credential", first)).verdict == "unanchored"
    report = check(await _export(ctx, "credential", first, anchor=True))
    assert report.verdict == "verified"
    assert await ctx.pool.fetchval("SELECT max(position) FROM chain_checkpoints") == 6


async def test_an_event_edited_in_the_database_never_passes_offline(
    ctx: Context, owner_pool: asyncpg.Pool
) -> None:
    """Edited after its checkpoint: the stored hash no longer follows; and with every later
    hash recomputed to hide it, the chain no longer reaches the signed hash."""
    keys = await _history(ctx, 5)
    await sign_now(ctx.pool, ctx.keyring, ctx.clock)
    target = keys[1]
    position = await ctx.pool.fetchval(
        "SELECT position FROM events WHERE stream_id = $1 AND stream_version = 1", target
    )
    rows = [row_to_event(r) for r in await ctx.pool.fetch(Q["rows_between"], 1, 100)]
    changed = rows[position - 1].payload.replace(b'"api.read"', b'"api.admin"')
    async with owner_pool.acquire() as conn, conn.transaction():  # the runtime may not
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await conn.execute(
            "UPDATE events SET payload = $2::json WHERE position = $1", position, changed.decode()
        )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    edited = check(await _export(ctx, "credential", target), trusted_jwks=_public_jwks(ctx))
    assert edited.problems == [
        f"event at position {position}: its hash does not follow from the chain "
        "(the event or the proof was altered)"
    ]
    prev = rows[position - 2].hash
    async with owner_pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        for event in rows[position - 1 :]:
            fields = {f: getattr(event, f) for f in event.__struct_fields__ if f != "hash"}
            if event.position == position:
                fields["payload"] = changed
            prev = event_hash(prev, **fields)
            await conn.execute(
                "UPDATE events SET hash = $2 WHERE position = $1", event.position, prev
            )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    rewritten = check(await _export(ctx, "credential", target), trusted_jwks=_public_jwks(ctx))
    assert rewritten.problems == [
        "the chain at position 10 does not reach the hash signed there: something in 1..10 "
        "was altered"
    ]


async def test_checkpoints_of_a_rotated_key_travel_with_their_jwk(ctx: Context) -> None:
    [first, *_] = await _history(ctx, 3)
    await sign_now(ctx.pool, ctx.keyring, ctx.clock)
    assert isinstance(ctx.clock, ManualClock)
    ctx.clock.advance(timedelta(days=1))
    await ctx.keyring.rotate(ctx.pool, ctx.clock.now())
    await revoke(ctx, "credential", first, OPERATOR, None)
    await sign_now(ctx.pool, ctx.keyring, ctx.clock)
    content = await _export(ctx, "credential", first)
    assert content.splitlines()[0].count('"kty":"OKP"') == 2
    assert check(content).verdict == "verified"
    all_keys = {"keys": [k.public_jwk for k in ctx.keyring.keys]}
    assert check(content, trusted_jwks=all_keys).verdict == "verified"
    assert check(content, trusted_jwks=_public_jwks(ctx)).verdict == "verified"
    ctx.clock.advance(timedelta(hours=2))  # the JWKS stops publishing the retired key
    assert check(content, trusted_jwks=_public_jwks(ctx)).verdict == "broken"
