"""Subscriptions' rules, as pure functions: the back-off schedule, decide and evolve."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.catalogue import Event
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
from service.domain.subscriptions import (
    BadPosition,
    Head,
    NotActive,
    Outcome,
    RetryPolicy,
    Subscription,
    SubscriptionNotFound,
    Terms,
    backoff_ceiling,
    backoff_delay,
    decide_create,
    decide_delivery,
    decide_remove,
    decide_replay,
    decide_update,
    evolve,
    fold,
)

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TERMS = Terms("https://rs.example/events", "https://rs.example/events", None,
              ("credential.revoked", "credential.expired"))  # fmt: skip
POLICY = RetryPolicy(max_attempts=4, max_age=timedelta(hours=1), base=1.0, cap=60.0)
OK = Outcome(202, None, duration_ms=5)
DOWN = Outcome(None, "connection failed")
REJECTED = Outcome(400, "http 400 invalid_key", permanent=True)


def head(position: int) -> Head:
    return Head(position, uuid.UUID(int=position))


class Log:
    """A subscription's stream in memory: decide, then append what was decided."""

    def __init__(self, cursor: int = 10) -> None:
        self.events: list[tuple[SubscriptionEvent, int, datetime]] = []
        self.append(decide_create("sub_1", TERMS, cursor, head=100), NOW)

    def append(self, events: list[Event], at: datetime) -> list[Event]:
        for event in events:
            self.events.append((event, len(self.events) + 1, at))  # type: ignore[arg-type]
        return events

    @property
    def state(self) -> Subscription:
        folded = fold(self.events)
        assert folded is not None
        return folded

    def deliver(
        self, at: int, outcome: Outcome, now: datetime = NOW, jitter: float = 1.0
    ) -> list[Event]:
        decided = decide_delivery(
            self.state, head(at), outcome, now=now, policy=POLICY, jitter=jitter
        )
        return self.append(decided, now)


# -- back-off -------------------------------------------------------------------------------


@given(
    attempt=st.integers(1, 500),
    base=st.floats(0.001, 100.0),
    extra=st.floats(0.0, 10_000.0),
    jitter=st.floats(0.0, 1.0),
)
def test_a_wait_is_a_fraction_of_a_ceiling_that_never_exceeds_the_cap(
    attempt: int, base: float, extra: float, jitter: float
) -> None:
    """0 <= delay <= ceiling <= cap, and the ceiling is base * 2**(n-1) until it reaches the cap."""
    cap = base + extra
    ceiling = backoff_ceiling(attempt, base, cap)
    delay = backoff_delay(attempt, base, cap, jitter)
    assert 0.0 <= delay <= ceiling <= cap
    assert ceiling == min(cap, base * 2.0 ** min(attempt - 1, 64))
    assert math.isclose(delay, jitter * ceiling)


@given(attempt=st.integers(1, 500), base=st.floats(0.001, 100.0), extra=st.floats(0.0, 10_000.0))
def test_the_ceiling_grows_until_the_cap_and_stays_there(
    attempt: int, base: float, extra: float
) -> None:
    cap = base + extra
    now, after = backoff_ceiling(attempt, base, cap), backoff_ceiling(attempt + 1, base, cap)
    assert now <= after
    assert after == cap or after == 2 * now  # doubling, or held at the cap
    assert backoff_ceiling(attempt + 80, base, cap) == cap  # everything reaches the cap


@pytest.mark.parametrize(("attempt", "jitter"), [(0, 0.5), (1, -0.1), (1, 1.5)])
def test_backoff_refuses_nonsense(attempt: int, jitter: float) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- the message is not the point
        backoff_delay(attempt, 1.0, 10.0, jitter)


# -- operator commands ----------------------------------------------------------------------


def test_a_new_subscription_is_active_from_its_position() -> None:
    log = Log(cursor=10)
    [created] = [e for e, _, _ in log.events]
    assert isinstance(created, SubscriptionCreated)
    assert (log.state.status, log.state.cursor, log.state.version, log.state.terms) == (
        "active", 10, 1, TERMS,
    )  # fmt: skip
    with pytest.raises(BadPosition):
        decide_create("sub_2", TERMS, 101, head=100)
    with pytest.raises(BadPosition):
        decide_create("sub_2", TERMS, -1, head=100)


def test_new_terms_are_an_update_and_the_same_terms_are_nothing() -> None:
    log = Log()
    assert decide_update(log.state, TERMS) == []
    narrower = Terms(TERMS.url, "aud", "v1.sealed", ("credential.revoked",), ("logout",))
    [updated] = log.append(decide_update(log.state, narrower), NOW)
    assert isinstance(updated, SubscriptionUpdated)
    assert (log.state.terms, log.state.cursor) == (narrower, 10)


def test_a_removed_subscription_takes_no_command_and_drops_its_secret() -> None:
    log = Log()
    log.append(
        decide_update(log.state, Terms(TERMS.url, TERMS.audience, "v1.x", TERMS.event_types)), NOW
    )
    [removed] = log.append(decide_remove(log.state, "offboarded"), NOW)
    assert removed == SubscriptionRemoved(reason="offboarded")
    assert (log.state.status, log.state.terms.secret_sealed) == ("removed", None)
    commands: list[Callable[[], object]] = [
        lambda: decide_remove(log.state, None),
        lambda: decide_update(log.state, TERMS),
        lambda: decide_replay(log.state, None, head=100),
    ]
    for command in commands:
        with pytest.raises(SubscriptionNotFound):
            command()
    with pytest.raises(SubscriptionNotFound):
        decide_remove(None, None)
    with pytest.raises(NotActive):
        decide_delivery(log.state, head(11), OK, now=NOW, policy=POLICY, jitter=0.5)


# -- deliveries -----------------------------------------------------------------------------


def test_a_delivery_moves_the_cursor_to_the_head() -> None:
    log = Log(cursor=10)
    [delivered] = log.deliver(12, OK)
    assert delivered == PushDelivered(position=12, event_id=head(12).event_id, attempt=1,
                                      status=202, duration_ms=5)  # fmt: skip
    assert (log.state.cursor, log.state.attempts, log.state.head_position) == (12, 0, None)
    with pytest.raises(ValueError, match="not after the cursor"):
        decide_delivery(log.state, head(12), OK, now=NOW, policy=POLICY, jitter=0.5)


def test_failures_count_per_head_and_schedule_the_next_try_within_the_ceiling() -> None:
    log = Log(cursor=10)
    [first] = log.deliver(12, DOWN, jitter=0.25)
    assert isinstance(first, PushDeliveryFailed)
    assert (first.attempt, first.status, first.error) == (1, None, "connection failed")
    assert first.retry_at == NOW + timedelta(seconds=0.25)  # a quarter of the 1 s ceiling
    later = NOW + timedelta(seconds=5)
    [second] = log.deliver(12, Outcome(500, "http 500"), now=later, jitter=1.0)
    assert isinstance(second, PushDeliveryFailed)
    assert (second.attempt, second.retry_at) == (2, later + timedelta(seconds=2))
    state = log.state
    assert (state.attempts, state.head_position, state.head_since) == (2, 12, NOW)
    assert state.next_attempt_at == second.retry_at
    assert state.cursor == 10


def test_a_retry_after_is_a_floor_held_under_the_cap() -> None:
    log = Log()
    [polite] = log.deliver(12, Outcome(429, "http 429", retry_after=30.0), jitter=0.0)
    assert isinstance(polite, PushDeliveryFailed)
    assert polite.retry_at == NOW + timedelta(seconds=30)
    [greedy] = log.deliver(12, Outcome(429, "http 429", retry_after=10_000.0), jitter=0.0)
    assert isinstance(greedy, PushDeliveryFailed)
    assert greedy.retry_at == NOW + timedelta(seconds=POLICY.cap)


def test_the_budget_of_tries_ends_in_a_dead_letter() -> None:
    log = Log()
    for _ in range(POLICY.max_attempts - 1):
        log.deliver(12, DOWN)
    failed, dead = log.deliver(12, DOWN)
    assert isinstance(failed, PushDeliveryFailed)
    assert (failed.attempt, failed.retry_at) == (POLICY.max_attempts, None)
    assert dead == PushDeadLettered(position=12, event_id=head(12).event_id,
                                    attempts=POLICY.max_attempts, cause="exhausted",
                                    error="connection failed")  # fmt: skip
    assert (log.state.status, log.state.head_position, log.state.cursor) == ("dead_letter", 12, 10)
    with pytest.raises(NotActive):
        decide_delivery(log.state, head(12), OK, now=NOW, policy=POLICY, jitter=0.5)


def test_a_head_failing_for_longer_than_max_age_is_dead_lettered_with_tries_left() -> None:
    log = Log()
    log.deliver(12, DOWN)
    events = log.deliver(12, DOWN, now=NOW + POLICY.max_age)
    assert [type(e) for e in events] == [PushDeliveryFailed, PushDeadLettered]
    assert log.state.attempts == 2 < POLICY.max_attempts


def test_a_rejected_set_is_dead_lettered_at_the_first_try() -> None:
    log = Log()
    failed, dead = log.deliver(12, REJECTED)
    assert isinstance(failed, PushDeliveryFailed)
    assert isinstance(dead, PushDeadLettered)
    assert (failed.status, failed.retry_at, dead.cause, dead.attempts) == (400, None, "rejected", 1)


def test_a_new_head_starts_counting_again() -> None:
    log = Log()
    log.deliver(12, DOWN)
    log.deliver(12, OK)
    [failed] = log.deliver(15, DOWN, now=NOW + timedelta(hours=5))
    assert isinstance(failed, PushDeliveryFailed)
    assert failed.attempt == 1
    assert log.state.head_since == NOW + timedelta(hours=5)


def test_a_replay_reactivates_a_dead_letter_at_the_position_asked_for() -> None:
    log = Log(cursor=10)
    log.deliver(12, REJECTED)
    [resume] = decide_replay(log.state, None, head=100)
    assert resume == PushReplayRequested(from_position=10, previous_cursor=10)
    [rewind] = log.append(decide_replay(log.state, 3, head=100), NOW)
    assert isinstance(rewind, PushReplayRequested)
    state = log.state
    assert (state.status, state.cursor, state.attempts, state.head_position) == (
        "active",
        3,
        0,
        None,
    )
    with pytest.raises(BadPosition):
        decide_replay(state, 101, head=100)
    with pytest.raises(BadPosition):
        decide_replay(state, -1, head=100)


def test_evolve_needs_a_created_subscription_first() -> None:
    with pytest.raises(ValueError, match=r"before subscription\.created"):
        evolve(None, SubscriptionRemoved(), 1, NOW)


answers = st.lists(st.sampled_from(["ok", "down", "rejected"]), min_size=1, max_size=40)


@given(script=answers)
def test_whatever_the_receiver_answers_each_event_is_delivered_once_and_in_order(
    script: list[str],
) -> None:
    """Drive a queue of events 11, 12, … with any sequence of answers (an operator resumes
    a dead letter): the cursor only moves by a delivery, to the head, in order; tries of one
    head are numbered 1, 2, …; no try is decided on a dead letter."""
    log = Log(cursor=10)
    delivered: list[int] = []
    clock, expected, last = NOW, 1, 0
    for answer in script:
        if log.state.status == "dead_letter":
            log.append(decide_replay(log.state, None, head=100), clock)
            expected = 1  # a resumed head is tried afresh
        position = log.state.cursor + 1
        if position != last:
            expected = 1
        outcome = {"ok": OK, "down": DOWN, "rejected": REJECTED}[answer]
        events = log.deliver(position, outcome, now=clock, jitter=0.5)
        clock += timedelta(minutes=1)
        tried = [e for e in events if isinstance(e, PushDelivered | PushDeliveryFailed)]
        assert len(tried) == 1
        assert tried[0].attempt == expected
        expected, last = expected + 1, position
        if isinstance(events[0], PushDelivered):
            delivered.append(position)
            assert log.state.cursor == position
        else:
            assert log.state.cursor == position - 1
    assert delivered == list(range(11, 11 + len(delivered)))
    assert len(delivered) == script.count("ok")
