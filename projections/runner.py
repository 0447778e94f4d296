"""Applying events to the read models: inline (in the append transaction) and by rebuild.

Both run the same statements, so a rebuild from the log gives exactly the rows the live run
wrote. Each event maps to one SQL statement of its aggregate's projection module (a
registration's claim attempts add a second one, for `attempt_addresses`).
"""

from __future__ import annotations

from collections.abc import Sequence

from events.access import ACCESS_EVENTS
from events.appends import Layers, PlannedProjector
from events.credential import CREDENTIAL_EVENTS
from events.delegation import DELEGATION_EVENTS
from events.dispatch import Dispatch
from events.envelope import RecordedEvent
from events.issuer import ISSUER_EVENTS
from events.ledger import LEDGER
from events.registration import REGISTRATION_EVENTS
from events.rows import at_once
from events.sql import Conn, load_queries
from events.store import row_to_event
from events.subscription import SUBSCRIPTION_EVENTS
from events.tenant import TENANT_EVENTS
from events.user import USER_EVENTS
from projections import (
    access,
    attempt_addresses,
    credentials,
    delegations,
    issuers,
    registrations,
    subscriptions,
    tenants,
    users,
)
from projections.layers import Statement, layers

TABLES = (
    "registrations",
    "credentials",
    "users",
    "trusted_issuers",
    "delegations",
    "subscriptions",
    "tenants",
    "access_credentials",
    "attempt_addresses",
)
READ_ALL = load_queries("events", "store.sql")["read_all"]


# Each event type's statements, in this order: a registration's event may also touch
# `attempt_addresses`.
STATEMENTS: Dispatch[Statement] = (
    Dispatch[Statement]()
    .on(REGISTRATION_EVENTS, registrations.statement)
    .on(REGISTRATION_EVENTS, attempt_addresses.statement)
    .on(CREDENTIAL_EVENTS, credentials.statement)
    .on(USER_EVENTS, users.statement)
    .on(ISSUER_EVENTS, issuers.statement)
    .on(DELEGATION_EVENTS, delegations.statement)
    .on(SUBSCRIPTION_EVENTS, subscriptions.statement)
    .on(TENANT_EVENTS, tenants.statement)
    .on(ACCESS_EVENTS, access.statement)
)


def statements(events: Sequence[RecordedEvent]) -> list[Statement]:
    out: list[Statement] = []
    for recorded in events:
        out += STATEMENTS.apply(LEDGER.decode(recorded), recorded)
    return out


def plan(events: Sequence[RecordedEvent]) -> Layers:
    """The statements that apply `events` as if in order, cut into layers
    (projections.layers). Made from the events' streams, versions, occurrence times and
    payloads only, never from their positions, hashes or recorded_at, so the writer plans them
    before the append numbers the events (events.appends.PlannedProjector). A layer's rows of
    a statement with a column form are already in it (events.rows.at_once)."""
    return [
        dict(at_once(sql, rows) for sql, rows in layer.items())
        for layer in layers(events, statements)
    ]


# The inline projector: `project(conn, events)` applies `events` in the caller's transaction
# (one execution per statement and layer, events.rows.at_once); the store plans a batch's
# statements before its transaction and sends them under the append lock.
project = PlannedProjector(plan)


async def rebuild(conn: Conn, *, batch: int = 5000) -> int:
    """Empty the read models and fold the whole log into them again, in one transaction.

    Returns how many events were applied. The caller holds off writers (or accepts that
    appends wait on the table locks until the rebuild commits).
    """
    applied, after = 0, 0
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        while True:
            rows = await conn.fetch(READ_ALL, after, batch)
            if not rows:
                return applied
            events = [row_to_event(r) for r in rows]
            await project(conn, events)
            applied += len(events)
            after = events[-1].position
