"""The revocation push worker against real Postgres and a real HTTP receiver on 127.0.0.1,
driven by a manual clock (back-off waits are crossed by moving the clock, not by sleeping)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
import httpx
import pytest

from events.clock import ManualClock
from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialExpired
from events.ledger import LEDGER
from events.store import EventStore, row_to_event
from events.subscription import SubscriptionEvent
from projections.replay import verify
from projections.runner import TABLES, rebuild
from service.commands.context import Caller, Change, Context
from service.commands.registration import register_anonymous
from service.commands.revocation import revoke
from service.commands.subscriptions import (
    Patch,
    Request,
    create,
    find,
    remove,
    replay,
    state_of,
    update,
)
from service.domain.subscriptions import RetryPolicy, fold
from service.push.delivery import post_set
from service.push.sets import set_jti
from tests.support.commands import command_context
from tests.support.outbound import LOOPBACK_ALLOWED, LOOPBACK_POLICY
from tests.support.set_receiver import SetReceiver
from workers.revocation_push import PushConfig, PushStats, PushWorker

SECRET = "r" * 40
CALLER = Caller(request_id="req-push", actor="admin")
WAIT = 15.0  # seconds a test waits for the worker to reach a state before failing
CONFIG = PushConfig(
    policy=RetryPolicy(max_attempts=4, base=1.0, cap=60.0),
    timeout=5.0,
    lease=30.0,
    idle_timeout=1.0,
)
PAST_ANY_WAIT = timedelta(seconds=61)  # more than the cap: any scheduled retry is due after it


@dataclass(frozen=True)
class Ended:
    credential_id: str
    position: int
    event_id: uuid.UUID


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def ctx(store: EventStore, pool: asyncpg.Pool, clock: ManualClock) -> Context:
    return await command_context(store, pool, clock, secret=SECRET)


def push_worker(
    pool: asyncpg.Pool, ctx: Context, clock: ManualClock, config: PushConfig = CONFIG
) -> PushWorker:
    return PushWorker(
        pool, secret_key=SECRET, tenant=ctx.tenant, clock=clock, config=config,
        jitter=lambda: 0.5, outbound_allow=LOOPBACK_ALLOWED,
    )  # fmt: skip


@asynccontextmanager
async def running(*workers: PushWorker) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:  # a worker that died on its own would hide a bug
            assert task.cancelled()


async def tries_due_now(pool: asyncpg.Pool, ctx: Context, clock: ManualClock) -> int:
    """How many tries a fresh worker makes when it sends everything due at the clock's now."""
    fresh = push_worker(pool, ctx, clock)
    try:
        return await fresh.run_once()
    finally:
        await fresh.close()


async def until_all(
    workers: tuple[PushWorker, ...], predicate: Callable[[list[PushStats]], bool]
) -> None:
    """Until `predicate` holds over the workers' stats, re-checked whenever one records."""
    async with asyncio.timeout(WAIT):
        while not predicate([w.stats for w in workers]):
            waits = [asyncio.ensure_future(w.wait_for(_more_than(w.stats))) for w in workers]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.gather(*waits, return_exceptions=True)


def failed_at_least(count: int) -> Callable[[PushStats], bool]:
    return lambda stats: stats.failed >= count


def _more_than(now: PushStats) -> Callable[[PushStats], bool]:
    """True once the worker has recorded another try."""
    attempts = now.attempts
    return lambda stats: stats.attempts > attempts


async def revoked(ctx: Context) -> Ended:
    """A fresh anonymous key, revoked by an operator: its `credential.revoked`."""
    registered = await register_anonymous(ctx, "api_key", CALLER)
    done = await revoke(ctx, "registration", registered.registration_id, CALLER, "incident")
    [credential_id] = done.credential_ids
    return await ended(ctx, credential_id, "credential.revoked")


async def expired(ctx: Context) -> Ended:
    """A fresh anonymous key whose `credential.expired` is recorded (as the expiry worker
    would)."""
    registered = await register_anonymous(ctx, "api_key", CALLER)
    row = await ctx.pool.fetchrow(
        "SELECT credential_id, version FROM credentials WHERE registration_id = $1",
        registered.registration_id,
    )
    assert row is not None
    stream = ctx.stream(CREDENTIAL, row["credential_id"])
    await ctx.record(
        [Change(stream, row["version"], [CredentialExpired()])],
        metadata=await ctx.metadata(CALLER, "x"),
        now=ctx.clock.now(),
    )
    return await ended(ctx, row["credential_id"], "credential.expired")


async def ended(ctx: Context, credential_id: str, event_type: str) -> Ended:
    row = await ctx.pool.fetchrow(
        "SELECT position, event_id FROM events WHERE stream_id = $1 AND type = $2",
        credential_id,
        event_type,
    )
    assert row is not None
    return Ended(credential_id, row["position"], row["event_id"])


async def subscribe(ctx: Context, url: str, **terms: Any) -> str:
    row = await create(
        ctx,
        Request(url=url, **terms),
        CALLER,
        from_position=None,
        allow_loopback_http=True,
        outbound=LOOPBACK_POLICY,
    )
    return str(row["subscription_id"])


async def stream_events(pool: asyncpg.Pool, subscription_id: str) -> list[Any]:
    rows = await pool.fetch(
        "SELECT * FROM events WHERE stream_id = $1 ORDER BY stream_version", subscription_id
    )
    return [LEDGER.decode(row_to_event(r)) for r in rows]


async def types_of(pool: asyncpg.Pool, subscription_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT type FROM events WHERE stream_id = $1 ORDER BY stream_version", subscription_id
    )
    return [r["type"] for r in rows]


async def row_of(ctx: Context, subscription_id: str) -> asyncpg.Record:
    row = await find(ctx, subscription_id)
    assert row is not None
    return row


async def test_a_failing_head_is_retried_until_accepted_and_later_events_wait_behind_it(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """500, 500, 500, then 202: the first revocation is accepted once, after three recorded
    failures; the two after it are sent only then, in log order."""
    async with SetReceiver() as receiver:
        sid = await subscribe(ctx, receiver.url)
        receiver.answer(500, 500, 500)
        first, second, third = [await revoked(ctx) for _ in range(3)]
        worker = push_worker(pool, ctx, clock)
        async with running(worker):
            for failures in (1, 2, 3):
                await asyncio.wait_for(worker.wait_for(failed_at_least(failures)), WAIT)
                assert {r.txn for r in receiver.received} == {str(first.event_id)}
                row = await row_of(ctx, sid)
                assert (row["attempts"], row["head_position"]) == (failures, first.position)
                assert row["next_attempt_at"] > clock.now()  # waits on the clock, not at once
                clock.advance(PAST_ANY_WAIT)
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered >= 3), WAIT)
    expected = [first.event_id] * 4 + [second.event_id, third.event_id]
    assert [r.txn for r in receiver.received] == [str(e) for e in expected]
    assert [r.answered for r in receiver.received] == [500, 500, 500, 202, 202, 202]
    accepted = Counter(r.claims()["jti"] for r in receiver.accepted())
    assert accepted == Counter(set_jti(sid, e.event_id) for e in (first, second, third))
    assert {r.claims()["jti"] for r in receiver.received[:4]} == {set_jti(sid, first.event_id)}
    assert (
        await types_of(pool, sid)
        == ["subscription.created"] + ["push.delivery_failed"] * 3 + ["push.delivered"] * 3
    )
    attempts = [e.attempt for e in await stream_events(pool, sid) if hasattr(e, "attempt")]
    assert attempts == [1, 2, 3, 4, 1, 1]
    row = await row_of(ctx, sid)
    assert row["status"] == "active"
    assert (row["cursor_position"], row["attempts"], row["head_position"]) == (
        third.position,
        0,
        None,
    )
    assert (row["delivered"], row["failed_attempts"], row["next_position"]) == (3, 3, None)


async def test_a_rejected_set_is_dead_lettered_at_once_and_a_replay_resumes_it(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """A 400 with `err` (RFC 8935 §2.3) stops the subscription at that event after one try;
    after the operator fixes the audience and resumes, both events arrive, in order."""
    async with SetReceiver() as receiver:
        sid = await subscribe(ctx, receiver.url, audience="https://wrong.example")
        receiver.answer(400, body={"err": "invalid_audience", "description": "aud is wrong"})
        first, second = await revoked(ctx), await revoked(ctx)
        worker = push_worker(pool, ctx, clock)
        async with running(worker):
            await asyncio.wait_for(worker.wait_for(lambda s: s.dead_lettered == 1), WAIT)
            row = await row_of(ctx, sid)
            assert (row["status"], row["dead_letter_cause"]) == ("dead_letter", "rejected")
            assert (row["head_position"], row["attempts"]) == (first.position, 1)
            assert row["last_error"] == "http 400 invalid_audience"
            assert len(receiver.received) == 1
            clock.advance(timedelta(days=2))  # a dead letter waits for an operator, not time
            assert await tries_due_now(pool, ctx, clock) == 0
            assert len(receiver.received) == 1
            await update(
                ctx,
                sid,
                Patch(audience=receiver.url),
                CALLER,
                allow_loopback_http=True,
                outbound=LOOPBACK_POLICY,
            )
            await replay(ctx, sid, CALLER, None)
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered == 2), WAIT)
    assert [r.txn for r in receiver.received] == [
        str(first.event_id),
        str(first.event_id),
        str(second.event_id),
    ]
    assert receiver.received[-1].claims()["aud"] == receiver.url
    assert await types_of(pool, sid) == [
        "subscription.created",
        "push.delivery_failed",
        "push.dead_lettered",
        "subscription.updated",
        "push.replay_requested",
        "push.delivered",
        "push.delivered",
    ]


async def test_the_retry_budget_ends_in_a_dead_letter_that_holds_later_events(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """A receiver that keeps failing is tried `max_attempts` times, then dead-lettered;
    nothing after the dead-lettered event is sent."""
    async with SetReceiver() as receiver:
        sid = await subscribe(ctx, receiver.url)
        receiver.status = 503
        first = await revoked(ctx)
        await revoked(ctx)
        worker = push_worker(pool, ctx, clock)
        async with running(worker):
            for failures in (1, 2, 3):
                await asyncio.wait_for(worker.wait_for(failed_at_least(failures)), WAIT)
                clock.advance(PAST_ANY_WAIT)
            await asyncio.wait_for(worker.wait_for(lambda s: s.dead_lettered == 1), WAIT)
    assert [r.txn for r in receiver.received] == [str(first.event_id)] * 4
    row = await row_of(ctx, sid)
    assert (row["status"], row["dead_letter_cause"], row["attempts"]) == (
        "dead_letter",
        "exhausted",
        4,
    )
    assert row["cursor_position"] < first.position == row["head_position"]
    failed = [e for e in await stream_events(pool, sid) if hasattr(e, "retry_at")]
    assert [e.status for e in failed] == [503] * 4
    assert [e.retry_at is None for e in failed] == [False, False, False, True]


async def test_two_workers_at_once_deliver_each_event_once_in_order(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock, database_url: str
) -> None:
    """Two workers (own pools, own stores) share three subscribers: every revocation reaches
    every subscriber exactly once, in log order, and is recorded once."""
    async with SetReceiver() as receiver:
        sids = [
            await subscribe(ctx, receiver.url, audience=f"https://rs{i}.example") for i in range(3)
        ]
        revocations = [await revoked(ctx) for _ in range(6)]
        async with (
            asyncpg.create_pool(database_url, min_size=1, max_size=6) as pool_a,
            asyncpg.create_pool(database_url, min_size=1, max_size=6) as pool_b,
        ):
            one, two = push_worker(pool_a, ctx, clock), push_worker(pool_b, ctx, clock)
            async with running(one, two):
                await receiver.wait_for(18)
                await until_all((one, two), lambda stats: sum(s.delivered for s in stats) >= 18)
    pairs = Counter((r.claims()["aud"], r.txn) for r in receiver.received)
    assert set(pairs.values()) == {1}
    assert len(pairs) == 18
    for i in range(3):
        sent = [r.txn for r in receiver.received if r.claims()["aud"] == f"https://rs{i}.example"]
        assert sent == [str(e.event_id) for e in revocations]
    for sid in sids:
        assert await types_of(pool, sid) == ["subscription.created"] + ["push.delivered"] * 6
    assert one.stats.delivered + two.stats.delivered == 18
    assert await pool.fetchval("SELECT count(*) FROM push_leases") == 0


async def test_a_stopped_worker_holds_no_lease(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """A stop can land between a claim's commit and its release (the two-worker test above
    once ended with a lease left): whatever the worker still holds, it gives back on stop."""
    async with SetReceiver() as receiver:
        sid = await subscribe(ctx, receiver.url)
        worker = push_worker(pool, ctx, clock)
        await pool.execute(  # held as if claimed just before the stop
            "INSERT INTO push_leases (subscription_id, holder, lease_until) "
            "VALUES ($1, $2, now() + interval '1 hour')",
            sid,
            worker.holder,
        )
        async with running(worker):
            await asyncio.wait_for(worker.wait_for(lambda s: s.sleeping), WAIT)
    assert await pool.fetchval("SELECT count(*) FROM push_leases") == 0


async def test_an_outcome_that_lands_after_the_subscription_moved_is_not_recorded(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """A replay made while a push is in flight wins: the late 202 is not recorded (the
    append names the version it decided on), and the event is sent again with the same jti."""
    async with SetReceiver() as receiver:
        sid = await subscribe(ctx, receiver.url)
        first = await revoked(ctx)
        receiver.hold()
        worker = push_worker(pool, ctx, clock)
        async with running(worker):
            await receiver.wait_for(1)
            await replay(ctx, sid, CALLER, first.position - 1)
            receiver.release()
            await asyncio.wait_for(
                worker.wait_for(lambda s: s.conflicts == 1 and s.delivered == 1), WAIT
            )
    assert [r.txn for r in receiver.received] == [str(first.event_id)] * 2
    assert len({r.claims()["jti"] for r in receiver.received}) == 1
    assert await types_of(pool, sid) == [
        "subscription.created",
        "push.replay_requested",
        "push.delivered",
    ]


async def test_filters_choose_what_a_subscriber_is_sent(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """Event types and revocation reasons filter each subscriber's queue; an expiry is sent
    as a CAEP `revoke` initiated by policy."""
    async with SetReceiver() as receiver:
        only_expiry = await subscribe(
            ctx,
            receiver.url,
            audience="https://expiry.example",
            event_types=("credential.expired",),
        )
        only_logout = await subscribe(
            ctx,
            receiver.url,
            audience="https://logout.example",
            event_types=("credential.revoked",),
            reasons=("logout",),
        )
        everything = await subscribe(ctx, receiver.url, audience="https://all.example")
        by_operator = await revoked(ctx)
        by_time = await expired(ctx)
        worker = push_worker(pool, ctx, clock)
        async with running(worker):
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered == 3), WAIT)
            await asyncio.wait_for(worker.wait_for(lambda s: s.sleeping), WAIT)
    sent = sorted((r.claims()["aud"], r.txn) for r in receiver.received)
    assert sent == sorted(
        [
            ("https://expiry.example", str(by_time.event_id)),
            ("https://all.example", str(by_operator.event_id)),
            ("https://all.example", str(by_time.event_id)),
        ]
    )
    expiry = next(r for r in receiver.received if r.claims()["aud"] == "https://expiry.example")
    [change] = expiry.claims()["events"].values()
    assert (change["change_type"], change["initiating_entity"]) == ("revoke", "policy")
    assert (await row_of(ctx, only_logout))["next_position"] is None
    assert (await row_of(ctx, only_expiry))["cursor_position"] == by_time.position
    assert (await row_of(ctx, everything))["cursor_position"] == by_time.position


async def test_rebuilding_from_the_log_gives_the_live_subscription_rows(
    ctx: Context,
    pool: asyncpg.Pool,
    clock: ManualClock,
    owner_pool: asyncpg.Pool,
    owner_database_url: str,
) -> None:
    """After retries, a dead letter, a replay, an update and a removal, the read model equals
    a rebuild from the log (in place, and blue/green as `authledger replay --verify` does it),
    and each row equals the pure fold of its stream."""
    async with SetReceiver() as receiver:
        kept = await subscribe(ctx, receiver.url, secret="s3cret-" + "x" * 20)
        dropped = await subscribe(ctx, receiver.url, audience="https://gone.example")
        receiver.answer(500, 400, 400)
        await revoked(ctx)
        worker = push_worker(pool, ctx, clock)
        async with running(worker):
            await asyncio.wait_for(worker.wait_for(lambda s: s.failed >= 1), WAIT)
            clock.advance(PAST_ANY_WAIT)
            await asyncio.wait_for(worker.wait_for(lambda s: s.dead_lettered == 2), WAIT)
            await replay(ctx, kept, CALLER, 0)
            # delivered before the update below: its filter would leave nothing to deliver
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered >= 1), WAIT)
            await remove(ctx, dropped, CALLER, "offboarded")
            await update(
                ctx,
                kept,
                Patch(reasons=("incident",)),
                CALLER,
                allow_loopback_http=True,
                outbound=LOOPBACK_POLICY,
            )
            await asyncio.wait_for(worker.wait_for(lambda s: s.sleeping), WAIT)
    live = await snapshot(pool)
    assert len(live["subscriptions"]) == 2
    for sid in (kept, dropped):
        recorded = await pool.fetch(
            "SELECT * FROM events WHERE stream_id = $1 ORDER BY stream_version", sid
        )
        history = [
            (LEDGER.decode(row_to_event(r)), r["stream_version"], r["occurred_at"])
            for r in recorded
        ]
        assert fold(cast(list[tuple[SubscriptionEvent, int, datetime]], history)) == state_of(
            await row_of(ctx, sid)
        )
    report = await verify(owner_database_url)  # replay's shadow schema: the owner's
    assert report.differences == []
    assert report.applied == await ctx.store.head_position()
    async with owner_pool.acquire() as conn:  # TRUNCATE: the owner's
        await rebuild(conn)
    assert await snapshot(pool) == live
    assert "subscriptions" in TABLES


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: [tuple(r.values()) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY 1")]
        for table in TABLES
    }


async def test_every_subscription_event_names_the_worker_and_the_revocation(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """Each try's event is the worker's (actor) and caused by the revocation it pushed."""
    async with SetReceiver() as receiver:
        sid = await subscribe(ctx, receiver.url)
        receiver.answer(502)
        first = await revoked(ctx)
        worker = push_worker(pool, ctx, clock)
        async with running(worker):
            await asyncio.wait_for(worker.wait_for(lambda s: s.failed == 1), WAIT)
            clock.advance(PAST_ANY_WAIT)
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered == 1), WAIT)
    rows = await pool.fetch(
        "SELECT type, metadata::text AS metadata FROM events "
        "WHERE stream_id = $1 AND type LIKE 'push.%' ORDER BY position",
        sid,
    )
    assert [r["type"] for r in rows] == ["push.delivery_failed", "push.delivered"]
    for r in rows:
        assert '"actor":"worker:revocation_push"' in r["metadata"]
        assert f'"causation_id":"{first.event_id}"' in r["metadata"]
    assert len(receiver.received) == 2


async def test_a_push_without_an_answer_in_time_is_a_timeout_and_redirects_are_not_followed() -> (
    None
):
    """The deadline covers the whole exchange; a 3xx is final (the SET and the secret go to
    the registered URL only), and nothing else is requested."""
    async with SetReceiver() as receiver, httpx.AsyncClient() as client:
        receiver.hold()
        slow = await post_set(client, receiver.url, "a.b.c", secret=None, deadline=0.2)
        assert (slow.status, slow.error, slow.permanent) == (None, "timeout", False)
        receiver.release()
        receiver.answer(307)
        moved = await post_set(client, receiver.url, "a.b.c", secret="x" * 16, deadline=5.0)
        assert (moved.status, moved.permanent) == (307, True)
        assert len(receiver.received) == 2
        await receiver.go_down()
        refused = await post_set(client, receiver.url, "a.b.c", secret=None, deadline=5.0)
        assert (refused.status, refused.error, refused.permanent) == (
            None,
            "connection failed",
            False,
        )
