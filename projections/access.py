"""Read model `access_credentials`: every scoped operator credential, live or revoked, by the
SHA-256 of its token (the access checks' lookup) and by id."""

from __future__ import annotations

from typing import Any, assert_never

from events.access import AccessEvent, AccessGranted, AccessRevoked
from events.envelope import RecordedEvent
from events.sql import load_queries

Q = load_queries("projections", "access.sql")
Statement = tuple[str, tuple[Any, ...]]


def statement(event: AccessEvent, recorded: RecordedEvent) -> Statement:
    version, at = recorded.stream_version, recorded.occurred_at
    match event:
        case AccessGranted():
            return Q["granted"], (
                recorded.stream_id, event.tenant_id, event.scope, event.client_id, event.label,
                event.token_hash, at, version,
            )  # fmt: skip
        case AccessRevoked():
            return Q["revoked"], (recorded.stream_id, at, event.reason, version)
        case _:
            assert_never(event)
