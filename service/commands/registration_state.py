"""A registration's state for the claim commands: its snapshot plus the events after it.

Folding the whole stream on every E5 to E8 call made a registration dearer to load with every
event it gained (security issue 12, finding 1). The commands now save the state they
committed (`remember`, after the commit, best effort) and load it back with only the events
recorded after it (`load`): usually none, so one query and an empty read, whatever the
stream's length. Events appended by others meanwhile (the expiry worker, erasure) are folded
on top. A snapshot that does not decode (a later release changed the state's shape) or is
gone (UNLOGGED: a crash empties the table) costs a full fold, never a wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec
import structlog

from events.appends import row_to_event
from events.catalogue import Event
from events.ledger import LEDGER
from events.registration import REGISTRATION_EVENTS, STREAM_TYPE, RegistrationEvent
from events.sql import Conn, load_queries
from service.commands.context import Context
from service.domain.registration import Registration, fold

Q = load_queries("service.commands", "registration_state.sql")
log = structlog.get_logger("service.commands.registration_state")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Registration).decode


async def load(ctx: Context, registration_id: str) -> Registration | None:
    """The registration's current state: its snapshot, folded forward with newer events (one
    query reads both; a second only for a snapshot that does not decode)."""
    rows = await ctx.pool.fetch(Q["load"], ctx.tenant.tenant_id, registration_id)
    snapshot = rows[0]["state"]  # the query always answers a row, NULLs for what is not there
    state: Registration | None = None
    if snapshot is not None:
        try:
            state = _decode(snapshot)
        except msgspec.DecodeError:
            state = None  # an older shape: fold from the start
    if snapshot is not None and state is None:
        recorded = await ctx.store.read_stream(ctx.stream(STREAM_TYPE, registration_id), 1)
    else:
        recorded = [row_to_event(r) for r in rows if r["position"] is not None]
    events = [LEDGER.decode_as(r, REGISTRATION_EVENTS) for r in recorded]
    return fold(events, state)


async def remember(ctx: Context, before: Registration, events: Sequence[Event]) -> None:
    """Save `before` with `events` applied, once those have committed (best effort: a failure
    only costs a later full fold)."""
    registration_events: list[RegistrationEvent] = list(events)  # type: ignore[arg-type]
    state = fold(registration_events, before)
    if state is None:
        return
    try:
        await ctx.pool.execute(
            Q["remember"],
            state.registration_id,
            ctx.tenant.tenant_id,
            state.version,
            _encode(state),
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("registration_state.not_saved", error=type(exc).__name__)


async def forget(conn: Conn, registration_ids: list[str]) -> None:
    """Drop the snapshots of erased registrations (in the erasure's transaction)."""
    await conn.execute(Q["forget"], registration_ids)
