"""Read model `delegations`: which provider subject acts for which user, and how often."""

from __future__ import annotations

from typing import Any, assert_never

from events.delegation import (
    DelegationCreated,
    DelegationEvent,
    DelegationRevoked,
    DelegationUsed,
)
from events.envelope import RecordedEvent
from events.rows import ColumnForm, column_form
from events.sql import load_queries

Q = load_queries("projections", "delegations.sql")
column_form(Q["used"], ColumnForm(Q["used_rows"]))
Statement = tuple[str, tuple[Any, ...]]


def statement(event: DelegationEvent, recorded: RecordedEvent) -> Statement:
    did, version, at = recorded.stream_id, recorded.stream_version, recorded.occurred_at
    match event:
        case DelegationCreated():
            return Q["created"], (
                did, recorded.tenant_id, event.issuer, event.audience, event.user_id,
                event.matched_by, at, version,
            )  # fmt: skip
        case DelegationUsed():
            return Q["used"], (did, at, version)
        case DelegationRevoked():
            return Q["revoked"], (did, at, version)
        case _:
            assert_never(event)
