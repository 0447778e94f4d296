"""Events of revocation-push subscriptions (stream type `subscription`, id `sub_…`).

A subscription is a webhook an operator registered: where to POST (`url`), what the SETs say
their audience is, an optional bearer secret the receiver checks, and which credential-ending
events it wants. Its stream records the operator's changes and, interleaved with them, every
delivery attempt the push worker made and what came of it, so the stream is the subscriber's
whole history: what it was sent, when, how it answered.

Decisions:
- One event per delivery attempt, named for its outcome: `push.delivered` (the receiver
  accepted the SET; the subscription's cursor moves to that log position) or
  `push.delivery_failed` (no answer, or an answer that is not a 2xx; `retry_at` says when
  the next try is due, or is None when there is none). Giving up is a separate fact,
  `push.dead_lettered`, appended with the failure that caused it.
- Delivery events live on the subscription's stream, appended at the version the worker
  decided on: two workers that both tried the same event cannot both record it, and an
  operator's change made meanwhile (removal, replay) wins over a late delivery result.
- The secret is never in the log in plain: `secret_sealed` is AES-256-GCM under a key derived
  from `AUTHLEDGER_SECRET_KEY` (purpose `authledger push secret v1`), bound to the
  subscription id (`service.push.secrets`).
- `position` fields name positions of the global log (the revocation being pushed);
  `event_id` is that event's id, from which the SET's `jti` is derived, so a retry or a
  replay sends the same `jti` and receivers can drop duplicates.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from events.catalogue import Event

STREAM_TYPE = "subscription"
EventType = Literal["credential.revoked", "credential.expired"]
DeadLetterCause = Literal["rejected", "exhausted"]


class SubscriptionCreated(Event, frozen=True, kw_only=True, tag="subscription.created"):
    """A webhook subscriber; it is sent what the log records after `from_position`."""

    subscription_id: str
    url: str
    audience: str  # the SETs' `aud`
    secret_sealed: str | None = None  # sent as `Authorization: Bearer …`; sealed, never plain
    event_types: tuple[EventType, ...]
    reasons: tuple[str, ...] = ()  # revocation reasons wanted; empty: every reason
    from_position: int


class SubscriptionUpdated(Event, frozen=True, kw_only=True, tag="subscription.updated"):
    """The subscription's new terms, in full; its cursor and delivery state are unchanged."""

    url: str
    audience: str
    secret_sealed: str | None = None
    event_types: tuple[EventType, ...]
    reasons: tuple[str, ...] = ()


class SubscriptionRemoved(Event, frozen=True, kw_only=True, tag="subscription.removed"):
    """Nothing more is sent to it; its history stays in the log."""

    reason: str | None = None


class PushDelivered(Event, frozen=True, kw_only=True, tag="push.delivered"):
    """The receiver accepted the SET for the event at `position` (attempt `attempt`)."""

    position: int
    event_id: uuid.UUID
    attempt: int
    status: int
    duration_ms: int


class PushDeliveryFailed(Event, frozen=True, kw_only=True, tag="push.delivery_failed"):
    """A try that did not deliver: `status` is the receiver's answer (None: no answer, e.g.
    a timeout or a refused connection), `error` a short description that never holds the SET
    or the secret. `retry_at` is when the next try is due; None when there is none."""

    position: int
    event_id: uuid.UUID
    attempt: int
    status: int | None = None
    error: str
    duration_ms: int
    retry_at: datetime | None = None


class PushDeadLettered(Event, frozen=True, kw_only=True, tag="push.dead_lettered"):
    """Delivery stopped at `position`: the receiver rejected the SET for good (`rejected`, a
    4xx) or the retry budget ran out (`exhausted`). Later events wait behind it until an
    operator asks for a replay."""

    position: int
    event_id: uuid.UUID
    attempts: int
    cause: DeadLetterCause
    error: str


class PushReplayRequested(Event, frozen=True, kw_only=True, tag="push.replay_requested"):
    """An operator asked to deliver again everything after `from_position` (the cursor
    moves there; a dead-lettered subscription becomes active again)."""

    from_position: int
    previous_cursor: int


SUBSCRIPTION_EVENTS: tuple[type[SubscriptionEvent], ...] = (
    SubscriptionCreated,
    SubscriptionUpdated,
    SubscriptionRemoved,
    PushDelivered,
    PushDeliveryFailed,
    PushDeadLettered,
    PushReplayRequested,
)
SubscriptionEvent = (
    SubscriptionCreated
    | SubscriptionUpdated
    | SubscriptionRemoved
    | PushDelivered
    | PushDeliveryFailed
    | PushDeadLettered
    | PushReplayRequested
)
