"""Read model `users`: the people agents act for, found by the blind index of their email."""

from __future__ import annotations

from typing import Any, assert_never

from events.envelope import RecordedEvent
from events.sql import load_queries
from events.user import UserCreated, UserErased, UserEvent

Q = load_queries("projections", "users.sql")
Statement = tuple[str, tuple[Any, ...]]


def statement(event: UserEvent, recorded: RecordedEvent) -> Statement:
    match event:
        case UserCreated():
            return Q["created"], (
                event.user_id, recorded.tenant_id, event.email_index, event.email_sealed,
                event.email_verified, recorded.occurred_at, event.phone_index, event.phone_sealed,
                event.phone_verified, event.name_sealed, event.created_via,
            )  # fmt: skip
        case UserErased():
            return Q["erased"], (recorded.stream_id, recorded.occurred_at)
        case _:
            assert_never(event)
