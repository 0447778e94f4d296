"""Webhook subscriptions and their delivery queue: pure `evolve` and `decide` functions.

A subscription is one stream (`sub_…`). Its queue is not stored: it is "every event of the
log after `cursor` that the filters want", read from the log in position order. The head of
the queue is delivered, retried or dead-lettered; nothing behind it moves until it is
delivered, so a subscriber sees revocations in log order and a failing head holds back only
its own subscription.

- `decide_delivery` turns the outcome of one try into events: `push.delivered` (the cursor
  moves to the head), `push.delivery_failed` with the next try's time, or, when the receiver
  rejected the SET for good or the budget ran out (`RetryPolicy`: tries, or age of the head's
  first failure), `push.delivery_failed` + `push.dead_lettered`. The jitter is passed in, so
  the decision stays pure and the schedule testable.
- Back-off is exponential with full jitter: the n-th failure waits a uniform fraction of
  `min(cap, base * 2**(n-1))` seconds, so receivers that failed together do not all come back
  at once; a `Retry-After` from the receiver is a floor (up to the cap).
- `decide_replay` moves the cursor to any position up to the log's head (default: where it
  stands, i.e. try the dead-lettered head again) and makes the subscription active.
- A removed subscription takes no command: it answers as if it did not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, assert_never

from events.catalogue import Event
from events.subscription import (
    DeadLetterCause,
    EventType,
    PushDeadLettered,
    PushDelivered,
    PushDeliveryFailed,
    PushReplayRequested,
    SubscriptionCreated,
    SubscriptionEvent,
    SubscriptionRemoved,
    SubscriptionUpdated,
)

EVENT_TYPES: tuple[EventType, ...] = ("credential.revoked", "credential.expired")
Status = Literal["active", "dead_letter", "removed"]


class SubscriptionNotFound(Exception):
    """No such subscription (or it was removed)."""


class NotActive(Exception):
    """A delivery was decided on a subscription that is not active (dead-lettered, removed)."""


class BadPosition(ValueError):
    """A position outside the log (below 0 or past its head)."""


@dataclass(frozen=True, slots=True)
class Terms:
    """What the operator chose: where to send, as whom, with which secret, what."""

    url: str
    audience: str
    secret_sealed: str | None
    event_types: tuple[EventType, ...]
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    terms: Terms
    status: Status
    cursor: int  # every wanted event up to this log position was delivered
    version: int
    attempts: int = 0  # failed tries of the event at head_position
    head_position: int | None = None
    head_since: datetime | None = None  # the first failed try of that event
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of one try: `error` None means delivered."""

    status: int | None
    error: str | None
    permanent: bool = False  # retrying the same SET cannot succeed
    retry_after: float | None = None  # seconds the receiver asked for
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Head:
    """The event at the head of a subscription's queue."""

    position: int
    event_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 30  # tries of one event before it is dead-lettered
    max_age: timedelta = timedelta(days=1)  # since its first failed try
    base: float = 2.0  # seconds: the ceiling of the first wait
    cap: float = 900.0  # seconds: the ceiling never grows past this

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base <= 0 or self.cap < self.base:
            raise ValueError("needs max_attempts >= 1 and 0 < base <= cap")


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """The longest wait after the `attempt`-th failed try: base * 2**(attempt-1), capped."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    return min(cap, base * 2.0 ** min(attempt - 1, 64))


def backoff_delay(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Full jitter: `jitter` (uniform in [0, 1]) times the ceiling."""
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter is a fraction in [0, 1]")
    return jitter * backoff_ceiling(attempt, base, cap)


# -- evolve ---------------------------------------------------------------------------------


def evolve(
    state: Subscription | None, event: SubscriptionEvent, version: int, at: datetime
) -> Subscription:
    """The state after `event` (recorded at stream `version`, occurred `at`); mirrors
    projections/subscriptions.sql."""
    if isinstance(event, SubscriptionCreated):
        terms = Terms(
            event.url, event.audience, event.secret_sealed, event.event_types, event.reasons
        )
        return Subscription(event.subscription_id, terms, "active", event.from_position, version)
    if state is None:
        raise ValueError(f"{type(event).__name__} before subscription.created")
    match event:
        case SubscriptionUpdated():
            terms = Terms(
                event.url, event.audience, event.secret_sealed, event.event_types, event.reasons
            )
            return replace(state, terms=terms, version=version)
        case SubscriptionRemoved():
            terms = replace(state.terms, secret_sealed=None)
            return replace(
                state, terms=terms, status="removed", next_attempt_at=None, version=version
            )
        case PushDelivered():
            return replace(
                state, cursor=event.position, attempts=0, head_position=None, head_since=None,
                next_attempt_at=None, version=version,
            )  # fmt: skip
        case PushDeliveryFailed():
            same = state.head_position == event.position and state.head_since is not None
            return replace(
                state, attempts=event.attempt, head_position=event.position,
                head_since=state.head_since if same else at, next_attempt_at=event.retry_at,
                version=version,
            )  # fmt: skip
        case PushDeadLettered():
            return replace(
                state, status="dead_letter", head_position=event.position,
                attempts=event.attempts, next_attempt_at=None, version=version,
            )  # fmt: skip
        case PushReplayRequested():
            return replace(
                state, status="active", cursor=event.from_position, attempts=0,
                head_position=None, head_since=None, next_attempt_at=None, version=version,
            )  # fmt: skip
        case SubscriptionCreated():  # handled above; here for the exhaustiveness check
            raise AssertionError("unreachable")
        case _:
            assert_never(event)


def fold(events: Sequence[tuple[SubscriptionEvent, int, datetime]]) -> Subscription | None:
    state: Subscription | None = None
    for event, version, at in events:
        state = evolve(state, event, version, at)
    return state


# -- decide: the operator's commands ---------------------------------------------------------


def decide_create(subscription_id: str, terms: Terms, from_position: int, head: int) -> list[Event]:
    _check_position(from_position, head)
    return [
        SubscriptionCreated(
            subscription_id=subscription_id,
            url=terms.url,
            audience=terms.audience,
            secret_sealed=terms.secret_sealed,
            event_types=terms.event_types,
            reasons=terms.reasons,
            from_position=from_position,
        )
    ]


def decide_update(state: Subscription | None, terms: Terms) -> list[Event]:
    """New terms, in full; nothing when they are the ones in force."""
    live = _live(state)
    if live.terms == terms:
        return []
    return [
        SubscriptionUpdated(
            url=terms.url,
            audience=terms.audience,
            secret_sealed=terms.secret_sealed,
            event_types=terms.event_types,
            reasons=terms.reasons,
        )
    ]


def decide_remove(state: Subscription | None, reason: str | None) -> list[Event]:
    _live(state)
    return [SubscriptionRemoved(reason=reason)]


def decide_replay(state: Subscription | None, from_position: int | None, head: int) -> list[Event]:
    """Deliver again after `from_position` (None: from the cursor, i.e. resume)."""
    live = _live(state)
    target = live.cursor if from_position is None else from_position
    _check_position(target, head)
    return [PushReplayRequested(from_position=target, previous_cursor=live.cursor)]


# -- decide: the worker's tries ---------------------------------------------------------------


def decide_delivery(
    state: Subscription,
    head: Head,
    outcome: Outcome,
    *,
    now: datetime,
    policy: RetryPolicy,
    jitter: float,
) -> list[Event]:
    """The events recording one try of `head` (see the module docstring)."""
    if state.status != "active":
        raise NotActive(f"{state.subscription_id} is {state.status}")
    if head.position <= state.cursor:
        raise ValueError(f"position {head.position} is not after the cursor {state.cursor}")
    same = state.head_position == head.position
    attempt = state.attempts + 1 if same else 1
    position, event_id = head.position, head.event_id
    if outcome.delivered:
        status = outcome.status if outcome.status is not None else 0
        return [
            PushDelivered(
                position=position, event_id=event_id, attempt=attempt, status=status,
                duration_ms=outcome.duration_ms,
            )
        ]  # fmt: skip
    error = outcome.error or "failed"
    since = state.head_since if same and state.head_since is not None else now
    exhausted = attempt >= policy.max_attempts or now - since >= policy.max_age
    retry_at: datetime | None = None
    if not (outcome.permanent or exhausted):
        delay = backoff_delay(attempt, policy.base, policy.cap, jitter)
        if outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, policy.cap))
        retry_at = now + timedelta(seconds=delay)
    failed = PushDeliveryFailed(
        position=position, event_id=event_id, attempt=attempt, status=outcome.status,
        error=error, duration_ms=outcome.duration_ms, retry_at=retry_at,
    )  # fmt: skip
    if retry_at is not None:
        return [failed]
    cause: DeadLetterCause = "rejected" if outcome.permanent else "exhausted"
    dead = PushDeadLettered(
        position=position, event_id=event_id, attempts=attempt, cause=cause, error=error
    )
    return [failed, dead]


def _live(state: Subscription | None) -> Subscription:
    if state is None or state.status == "removed":
        raise SubscriptionNotFound("no such subscription")
    return state


def _check_position(position: int, head: int) -> None:
    if not 0 <= position <= head:
        raise BadPosition(f"from_position must be between 0 and the log's head ({head})")
