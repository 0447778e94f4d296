"""Attack (issue 12, finding 1, its last part): grow a registration's stream so that every
claim call on it folds more events. The claim commands now load the state they saved after
their last commit (registration_snapshots) and fold only what came after it, so a
registration with 200 events loads by reading none; and the stream cannot pass 256."""

from __future__ import annotations

import asyncpg
import pytest

from events.clock import ManualClock
from events.ledger import LEDGER
from events.registration import STREAM_TYPE, RegistrationEvent, RegistrationExpired
from events.store import EventStore
from service.commands import registration_state
from service.commands.claim import start_claim
from service.commands.context import Caller, Context
from service.commands.registration import register_anonymous
from service.domain.errors import ProtocolError
from service.domain.registration import GROWTH_LIMIT, STREAM_LIMIT, fold
from tests.support.commands import command_context

CALLER = Caller(request_id="req_1", client_ip="192.0.2.1")


@pytest.fixture
async def ctx(store: EventStore, pool: asyncpg.Pool) -> Context:
    return await command_context(store, pool, ManualClock())


async def _stream(ctx: Context, registration_id: str) -> list[RegistrationEvent]:
    recorded = await ctx.store.read_stream(ctx.stream(STREAM_TYPE, registration_id))
    return [LEDGER.decode(r) for r in recorded]  # type: ignore[misc]


async def test_a_long_registration_loads_without_reading_its_events(ctx: Context) -> None:
    """Attempts with new addresses until E5 refuses (429): the stream stops at GROWTH_LIMIT,
    the snapshot is at its head (a load reads no event), and it equals the full fold."""
    registered = await register_anonymous(ctx, "api_key", CALLER)
    rid = registered.registration_id
    refused = None
    for n in range(STREAM_LIMIT):
        try:
            await start_claim(ctx, registered.claim_token, f"person{n}@example.test", CALLER)
        except ProtocolError as exc:
            refused = exc
            break
    assert refused is not None
    assert (refused.code, refused.status) == ("rate_limited", 429)
    events = await _stream(ctx, rid)
    assert GROWTH_LIMIT - 2 < len(events) <= GROWTH_LIMIT
    row = await ctx.pool.fetchrow(
        "SELECT version FROM registration_snapshots WHERE registration_id = $1", rid
    )
    assert row is not None
    assert row["version"] == len(events)  # so `load` reads from version len + 1: nothing
    assert await registration_state.load(ctx, rid) == fold(events)


async def test_events_after_the_snapshot_are_folded_on_top(ctx: Context) -> None:
    """Another writer (here the expiry) appends after the command saved its snapshot: the
    load folds that event on top; a snapshot that no longer decodes costs a full fold."""
    registered = await register_anonymous(ctx, "api_key", CALLER)
    rid = registered.registration_id
    await start_claim(ctx, registered.claim_token, "ana@example.test", CALLER)
    snapshot = await ctx.pool.fetchval(
        "SELECT version FROM registration_snapshots WHERE registration_id = $1", rid
    )
    await ctx.store.append(
        ctx.stream(STREAM_TYPE, rid),
        snapshot,
        [LEDGER.new(RegistrationExpired(reason="ttl"), occurred_at=ctx.clock.now())],
    )
    loaded = await registration_state.load(ctx, rid)
    assert loaded is not None
    assert (loaded.status, loaded.version) == ("expired", snapshot + 1)
    assert loaded == fold(await _stream(ctx, rid))
    await ctx.pool.execute(
        "UPDATE registration_snapshots SET state = '{}'::bytea WHERE registration_id = $1", rid
    )
    assert await registration_state.load(ctx, rid) == fold(await _stream(ctx, rid))
