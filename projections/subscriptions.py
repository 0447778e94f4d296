"""Read model `subscriptions`: each webhook subscriber, its terms and where delivery stands.

One row per subscription, folded from its stream: the terms (URL, audience, sealed secret,
filters), the cursor (the log position up to which everything it wants was delivered), the
head being retried (its position, failed tries, first failure, next try) and, once delivery
gave up, the dead letter (cause and time). Counters and the last answer make `GET
/admin/subscriptions` useful without reading the stream. `service.domain.subscriptions.evolve`
is the same fold in Python; a test checks the two agree.
"""

from __future__ import annotations

from typing import Any, assert_never

from events.envelope import RecordedEvent
from events.sql import load_queries
from events.subscription import (
    PushDeadLettered,
    PushDelivered,
    PushDeliveryFailed,
    PushReplayRequested,
    SubscriptionCreated,
    SubscriptionEvent,
    SubscriptionRemoved,
    SubscriptionUpdated,
)

Q = load_queries("projections", "subscriptions.sql")
Statement = tuple[str, tuple[Any, ...]]


def statement(event: SubscriptionEvent, recorded: RecordedEvent) -> Statement:
    sid, version, at = recorded.stream_id, recorded.stream_version, recorded.occurred_at
    match event:
        case SubscriptionCreated():
            return Q["created"], (
                sid, recorded.tenant_id, event.url, event.audience, event.secret_sealed,
                list(event.event_types), list(event.reasons), event.from_position, at, version,
            )  # fmt: skip
        case SubscriptionUpdated():
            return Q["updated"], (
                sid, event.url, event.audience, event.secret_sealed, list(event.event_types),
                list(event.reasons), at, version,
            )  # fmt: skip
        case SubscriptionRemoved():
            return Q["removed"], (sid, at, version)
        case PushDelivered():
            return Q["delivered"], (sid, event.position, event.status, at, version)
        case PushDeliveryFailed():
            return Q["delivery_failed"], (
                sid, event.position, event.attempt, event.status, event.error, event.retry_at,
                at, version,
            )  # fmt: skip
        case PushDeadLettered():
            return Q["dead_lettered"], (
                sid, event.position, event.attempts, event.cause, event.error, at, version,
            )  # fmt: skip
        case PushReplayRequested():
            return Q["replay_requested"], (sid, event.from_position, at, version)
        case _:
            assert_never(event)
