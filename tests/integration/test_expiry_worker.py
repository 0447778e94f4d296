"""The expiry worker against a real Postgres, driven by a manual clock (no real sleeping)."""

from __future__ import annotations

import asyncio
import contextlib
import types
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.catalogue import Event, event_tag
from events.clock import ManualClock
from events.credential import CredentialExpired, CredentialRevoked
from events.ledger import LEDGER
from events.registration import ClaimAttemptExpired, RegistrationExpired
from events.store import EventStore, row_to_event
from projections.runner import TABLES, rebuild
from service.caches.credentials import CredentialCache, Refusal
from service.caches.principal import Principal
from service.commands.agent_identity import register_anonymous_v06
from service.commands.claim import claim_page, complete_claim, issue_otp, start_claim
from service.commands.context import Caller, Context
from service.commands.credentials import Minted
from service.commands.registration import register_anonymous, register_verified_email
from service.commands.tokens import exchange
from service.crypto.tokens import token_hash
from service.domain.errors import ProtocolError
from service.mail.outbox import open_link_token
from service.settings import Settings
from tests.support.commands import command_context
from workers.expiry import ACTOR, ExpiryConfig, ExpiryStats, ExpiryWorker
from workers.expiry_states import Case, read_states
from workers.runner import workers

SECRET = "e" * 40
CALLER = Caller(request_id="req-expiry", client_ip="203.0.113.9")
WAIT = 15.0  # seconds a test waits for the worker to reach a state before failing
SHORT = Settings(  # deadlines within the hour: TTL 30 min, token 20 min, link 10 min
    database_url="",
    nats_url="",
    secret_key=SECRET,
    registration_ttl=1800,
    access_token_ttl=1200,
    claim_link_ttl=600,
)


async def make_context(
    store: EventStore, pool: asyncpg.Pool, clock: ManualClock, chosen: Settings
) -> Context:
    return await command_context(store, pool, clock, settings=chosen, secret=SECRET)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def ctx(store: EventStore, pool: asyncpg.Pool, clock: ManualClock) -> Context:
    return await make_context(store, pool, clock, Settings("", "", secret_key=SECRET))


@pytest.fixture
async def short_ctx(store: EventStore, pool: asyncpg.Pool, clock: ManualClock) -> Context:
    return await make_context(store, pool, clock, SHORT)


@asynccontextmanager
async def own_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool of its own, as another worker process would hold."""
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    try:
        yield created
    finally:
        await created.close()


@asynccontextmanager
async def running(worker: ExpiryWorker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def settled(worker: ExpiryWorker, clock: ManualClock) -> ExpiryStats:
    """Until the worker sleeps with nothing due on the clock at its last look."""
    return await asyncio.wait_for(
        worker.wait_for(
            lambda s: s.sleeping and (s.next_deadline is None or s.next_deadline > clock.now())
        ),
        WAIT,
    )


@dataclass(frozen=True)
class Recorded:
    stream_id: str
    occurred_at: datetime
    event: Event

    @property
    def type(self) -> str:
        return event_tag(type(self.event))


async def expiry_events(pool: asyncpg.Pool) -> list[Recorded]:
    """Every event the expiry worker recorded, in log order."""
    rows = await pool.fetch(
        "SELECT position, event_id, tenant_id, stream_type, stream_id, stream_version, type, "
        "schema_version, occurred_at, recorded_at, payload, metadata, hash FROM events "
        "WHERE metadata->>'actor' = $1 ORDER BY position",
        ACTOR,
    )
    return [
        Recorded(r["stream_id"], r["occurred_at"], LEDGER.decode(row_to_event(r))) for r in rows
    ]


async def verdict(pool: asyncpg.Pool, store: EventStore, token: str, now: datetime) -> object:
    """A credential check as a fresh process makes it (the row, no worker involved)."""
    cache = CredentialCache(pool, store)
    try:
        found: Principal | Refusal = await cache.verdict(token, now)
    finally:
        await cache.close()
    return "live" if isinstance(found, Principal) else found


async def credential_id_of(pool: asyncpg.Pool, plain: str) -> str:
    found = await pool.fetchval(
        "SELECT credential_id FROM credentials WHERE token_hash = $1", token_hash(plain)
    )
    assert isinstance(found, str)
    return found


async def current_link(ctx: Context, registration_id: str) -> tuple[str, str] | None:
    """The current attempt of a registration and its link token, as the mailer opens it."""
    row = await ctx.pool.fetchrow(
        "SELECT o.attempt_id, o.link_token_sealed FROM registrations r "
        "JOIN mail_outbox o ON o.attempt_id = r.attempt_id WHERE r.registration_id = $1",
        registration_id,
    )
    if row is None:
        return None
    return row["attempt_id"], open_link_token(SECRET, row["attempt_id"], row["link_token_sealed"])


async def link_token_of(ctx: Context, registration_id: str) -> tuple[str, str]:
    found = await current_link(ctx, registration_id)
    assert found is not None
    return found


async def claimed_access_token(ctx: Context) -> Minted:
    """An email registration claimed with the right code: its access token."""
    reg = await register_verified_email(
        ctx, f"{uuid.uuid4().hex[:10]}@example.net", "access_token", CALLER
    )
    _, link = await link_token_of(ctx, reg.registration_id)
    code = (await issue_otp(ctx, link, CALLER)).otp
    done = await complete_claim(ctx, reg.claim_token, code, CALLER)
    assert done.credential is not None
    return done.credential


# -- must hold: an unclaimed registration, an access token ---------------------------------------


async def test_an_unclaimed_registration_expires_and_its_key_is_refused(
    ctx: Context, pool: asyncpg.Pool, store: EventStore, clock: ManualClock
) -> None:
    """Past its TTL the anonymous key is refused with no worker; the worker then records
    registration.expired (ttl) and the key's revocation, dated at the deadline, once."""
    reg = await register_anonymous(ctx, "api_key", CALLER)
    assert reg.credential is not None
    key_id = await credential_id_of(pool, reg.credential)
    deadline = reg.claim_token_expires
    assert await verdict(pool, store, reg.credential, deadline - timedelta(seconds=1)) == "live"
    clock.set(deadline)
    assert await verdict(pool, store, reg.credential, clock.now()) == "expired"
    assert await expiry_events(pool) == []

    clock.advance(timedelta(minutes=5))
    worker = ExpiryWorker(pool, store=store, clock=clock)
    assert await worker.run_once() == 2
    assert await expiry_events(pool) == [
        Recorded(reg.registration_id, deadline, RegistrationExpired(reason="ttl")),
        Recorded(key_id, deadline, CredentialRevoked(reason="registration_expired")),
    ]
    row = await pool.fetchrow(
        "SELECT r.status, c.status AS key_status, c.end_reason, c.ended_at FROM registrations r "
        "JOIN credentials c ON c.credential_id = r.credential_id WHERE r.registration_id = $1",
        reg.registration_id,
    )
    assert row is not None
    assert tuple(row.values()) == ("expired", "revoked", "registration_expired", deadline)
    assert await verdict(pool, store, reg.credential, clock.now()) == "revoked"
    with pytest.raises(ProtocolError) as caught:
        await start_claim(ctx, reg.claim_token, "ana@example.net", CALLER)
    assert caught.value.code == "claim_expired"
    assert await worker.run_once() == 0
    assert worker.stats.recorded == Counter({"registration.expired": 1, "credential.revoked": 1})


async def test_an_access_token_is_refused_at_exp_with_the_worker_stopped(
    ctx: Context, pool: asyncpg.Pool, store: EventStore, clock: ManualClock
) -> None:
    """An access token past exp is refused at once with no worker running; credential.expired
    is recorded, dated at exp, once the worker runs."""
    token = await claimed_access_token(ctx)
    assert token.expires_at is not None
    assert await verdict(pool, store, token.plain, clock.now()) == "live"
    clock.set(token.expires_at)
    assert await verdict(pool, store, token.plain, clock.now()) == "expired"
    clock.advance(timedelta(minutes=10))
    assert await verdict(pool, store, token.plain, clock.now()) == "expired"
    assert await expiry_events(pool) == []

    worker = ExpiryWorker(pool, store=store, clock=clock)
    assert await worker.run_once() == 1
    expired = Recorded(token.credential_id, token.expires_at, CredentialExpired())
    assert await expiry_events(pool) == [expired]
    status = await pool.fetchval(
        "SELECT status FROM credentials WHERE credential_id = $1", token.credential_id
    )
    assert status == "expired"
    assert await verdict(pool, store, token.plain, clock.now()) == "expired"


# -- must hold: two workers at once ----------------------------------------------------------


async def populate(ctx: Context, clock: ManualClock) -> Counter[tuple[str, str]]:
    """Registrations and credentials of every kind, made over a few hours; what expiry must
    record for them once a day has passed, each exactly once."""
    expected: Counter[tuple[str, str]] = Counter()
    for n in range(8):
        reg = await register_anonymous(ctx, "api_key", CALLER)
        assert reg.credential is not None
        key_id = await credential_id_of(ctx.pool, reg.credential)
        expected[reg.registration_id, "registration.expired"] += 1
        expected[key_id, "credential.revoked"] += 1
        if n % 3 == 0:  # a claim started: its link window ends first
            await start_claim(ctx, reg.claim_token, f"a{n}@example.net", CALLER)
            expected[reg.registration_id, "claim.attempt_expired"] += 1
        clock.advance(timedelta(minutes=17))
    for n in range(4):
        email = await register_verified_email(ctx, f"b{n}@example.net", "api_key", CALLER)
        expected[email.registration_id, "claim.attempt_expired"] += 1
        expected[email.registration_id, "registration.expired"] += 1
        token = await claimed_access_token(ctx)
        expected[token.credential_id, "credential.expired"] += 1
        clock.advance(timedelta(minutes=23))
    return expected


def exactly_once(events: list[Recorded]) -> Counter[tuple[str, str]]:
    found = Counter((e.stream_id, e.type) for e in events)
    assert max(found.values()) == 1, [k for k, n in found.items() if n > 1]
    return found


@pytest.mark.parametrize("skip_locked", [True, False], ids=["claims", "versions-only"])
async def test_two_workers_at_once_record_each_expiry_exactly_once(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock, database_url: str, skip_locked: bool
) -> None:
    """Two workers, each with its own pool and store (two processes), catch up on the same
    deadlines at the same time: every expiry is recorded once, by one of them. Without the
    advisory claims the expected versions alone still keep it to once."""
    expected = await populate(ctx, clock)
    clock.advance(timedelta(days=2))
    config = ExpiryConfig(batch=5, skip_locked=skip_locked)  # several rounds each
    async with own_pool(database_url) as first_pool, own_pool(database_url) as second_pool:
        first = ExpiryWorker(first_pool, clock=clock, config=config)
        second = ExpiryWorker(second_pool, clock=clock, config=config)
        try:
            counts = await asyncio.gather(first.run_once(), second.run_once())
        finally:
            await first.close()
            await second.close()
    events = await expiry_events(pool)
    assert exactly_once(events) == expected
    assert sum(counts) == len(events)
    assert first.stats.recorded + second.stats.recorded == Counter(e.type for e in events)


async def test_two_running_workers_share_deadlines_as_they_pass(
    ctx: Context, pool: asyncpg.Pool, clock: ManualClock, database_url: str
) -> None:
    """Two `run()` loops while time moves on in steps: each step's expiries are recorded
    exactly once between them, and every one of them in the end."""
    expected = await populate(ctx, clock)
    async with own_pool(database_url) as first_pool, own_pool(database_url) as second_pool:
        first = ExpiryWorker(first_pool, clock=clock, config=ExpiryConfig(batch=3))
        second = ExpiryWorker(second_pool, clock=clock, config=ExpiryConfig(batch=3))
        async with running(first), running(second):
            for _ in range(14):
                clock.advance(timedelta(hours=2))
                await settled(first, clock)
                await settled(second, clock)
    events = await expiry_events(pool)
    assert exactly_once(events) == expected
    assert first.stats.recorded + second.stats.recorded == Counter(e.type for e in events)


# -- must hold: an hour of downtime ----------------------------------------------------------


async def test_an_hour_of_downtime_is_caught_up_on_restart(
    short_ctx: Context, pool: asyncpg.Pool, store: EventStore, clock: ManualClock
) -> None:
    """The worker stops, an hour passes with deadlines every few minutes, the lag grows; on
    restart every missed expiry is recorded, dated at its own deadline, and the lag is 0."""
    ctx = short_ctx
    first = ExpiryWorker(pool, store=store, clock=clock)
    async with running(first):
        await settled(first, clock)
    start = clock.now()
    for n in range(4):  # made while the worker is down: every deadline passes unwatched
        await register_anonymous(ctx, "api_key", CALLER)
        await register_verified_email(ctx, f"c{n}@example.net", "api_key", CALLER)
        await claimed_access_token(ctx)
        clock.advance(timedelta(minutes=6))
    deadlines: dict[tuple[str, str], datetime] = {}
    for row in await pool.fetch(
        "SELECT registration_id, expires_at, link_expires_at FROM registrations "
        "WHERE status <> 'claimed'"
    ):
        deadlines[row["registration_id"], "registration.expired"] = row["expires_at"]
        if row["link_expires_at"] is not None:
            deadlines[row["registration_id"], "claim.attempt_expired"] = row["link_expires_at"]
    for row in await pool.fetch("SELECT credential_id, expires_at, kind FROM credentials"):
        kind = "credential.expired" if row["kind"] == "access_token" else "credential.revoked"
        deadlines[row["credential_id"], kind] = row["expires_at"]
    clock.set(start + timedelta(hours=1, minutes=30))
    assert max(deadlines.values()) <= clock.now()
    assert await expiry_events(pool) == []
    lag = await first.lag()
    assert lag == clock.now() - min(deadlines.values())
    assert lag > timedelta(hours=1)

    restarted = ExpiryWorker(pool, store=store, clock=clock)
    async with running(restarted):
        stats = await settled(restarted, clock)
        assert stats.lag_seconds == 0.0
    events = await expiry_events(pool)
    exactly_once(events)
    assert {(e.stream_id, e.type): e.occurred_at for e in events} == deadlines
    assert await restarted.lag() == timedelta(0)


# -- sleeping and waking ---------------------------------------------------------------------


async def test_a_nearer_deadline_written_while_asleep_wakes_the_worker(
    ctx: Context, pool: asyncpg.Pool, store: EventStore, clock: ManualClock
) -> None:
    """Asleep until a deadline a day away, the worker is woken by the append of a nearer one
    (a claim link's 10 minutes), sleeps until that, and records it when the clock gets there."""
    far = await register_anonymous(ctx, "api_key", CALLER)
    config = ExpiryConfig(idle_timeout=3600.0)  # only a NOTIFY or the clock can wake it
    worker = ExpiryWorker(pool, store=store, clock=clock, config=config)
    async with running(worker):
        await asyncio.wait_for(
            worker.wait_for(lambda s: s.asleep_until == far.claim_token_expires), WAIT
        )
        near = await register_verified_email(ctx, "dora@example.net", "api_key", CALLER)
        link_end = await pool.fetchval(
            "SELECT link_expires_at FROM registrations WHERE registration_id = $1",
            near.registration_id,
        )
        await asyncio.wait_for(worker.wait_for(lambda s: s.asleep_until == link_end), WAIT)
        assert clock.sleepers == 1
        assert await expiry_events(pool) == []
        clock.set(link_end)
        await asyncio.wait_for(
            worker.wait_for(lambda s: s.asleep_until == far.claim_token_expires), WAIT
        )
    attempt_id, _ = await link_token_of(ctx, near.registration_id)
    assert await expiry_events(pool) == [
        Recorded(near.registration_id, link_end, ClaimAttemptExpired(attempt_id=attempt_id)),
    ]


async def test_the_link_window_ends_the_attempt_but_the_last_code_still_claims(
    ctx: Context, pool: asyncpg.Pool, store: EventStore, clock: ManualClock
) -> None:
    """§6.2: claim.attempt_expired at the window's end; the link then answers 410 expired
    (not 404 unknown) and mints nothing, the code minted before still claims, and a claimed
    registration never expires."""
    reg = await register_anonymous(ctx, "api_key", CALLER)
    started = await start_claim(ctx, reg.claim_token, "eve@example.net", CALLER)
    attempt_id, link = await link_token_of(ctx, reg.registration_id)
    clock.set(started.expires_at - timedelta(seconds=1))
    code = (await issue_otp(ctx, link, CALLER)).otp
    clock.set(started.expires_at + timedelta(seconds=30))
    worker = ExpiryWorker(pool, store=store, clock=clock)
    assert await worker.run_once() == 1
    assert await expiry_events(pool) == [
        Recorded(
            reg.registration_id, started.expires_at, ClaimAttemptExpired(attempt_id=attempt_id)
        ),
    ]
    row = await pool.fetchrow(
        "SELECT attempt_status, attempt_token_hash FROM registrations WHERE registration_id = $1",
        reg.registration_id,
    )
    assert row is not None
    assert tuple(row.values()) == ("link_expired", token_hash(link))
    for refused in (claim_page(ctx, link), issue_otp(ctx, link, CALLER)):
        with pytest.raises(ProtocolError) as caught:
            await refused
        assert caught.value.code == "claim_expired"
    await complete_claim(ctx, reg.claim_token, code, CALLER)
    assert reg.credential is not None
    clock.advance(timedelta(days=3))
    assert await worker.run_once() == 0
    assert await verdict(pool, store, reg.credential, clock.now()) == "live"


async def test_the_runner_starts_the_expiry_worker(pool: asyncpg.Pool) -> None:
    """`authledger worker` and `authledger dev` run every worker of workers.runner."""
    chosen = Settings("", "", secret_key=SECRET, smtp_url="smtp://127.0.0.1:2525")
    jobs = workers(chosen, pool)
    try:
        assert {"expiry", "relay", "mailer"} <= set(jobs)
        job = jobs["expiry"]
        assert isinstance(job, types.CoroutineType)
        assert job.__qualname__ == "ExpiryWorker.run"
    finally:
        for job in jobs.values():
            job.close()


# -- property: the worker's events keep rebuild == live ------------------------------------------

VERBS = ["anonymous", "email", "claim", "mint", "right", "wrong", "wait", "wait_long", "expire"]


@pytest.mark.timeout(600)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    script=st.lists(st.tuples(st.sampled_from(VERBS), st.integers(0, 3)), min_size=3, max_size=25)
)
async def test_rebuilding_after_expiries_gives_the_live_rows(
    script: list[tuple[str, int]], store: EventStore, pool: asyncpg.Pool, owner_pool: asyncpg.Pool
) -> None:
    """Random commands with the worker's rounds in between: every expiry is recorded once,
    and a rebuild from the log gives exactly the rows the live run wrote."""
    clock = ManualClock()
    ctx = await make_context(store, pool, clock, SHORT)
    worker = ExpiryWorker(pool, store=store, clock=clock)
    claim_tokens: list[str] = []
    codes: dict[str, str] = {}
    for verb, which in script:
        with contextlib.suppress(ProtocolError):
            if verb == "anonymous":
                claim_tokens.append((await register_anonymous(ctx, "api_key", CALLER)).claim_token)
            elif verb == "email":
                email = f"p{which}@example.net"
                registered = await register_verified_email(ctx, email, "access_token", CALLER)
                claim_tokens.append(registered.claim_token)
            elif verb == "wait":
                clock.advance(timedelta(minutes=4))
            elif verb == "wait_long":
                clock.advance(timedelta(minutes=25))
            elif verb == "expire":
                await worker.run_once()
            elif claim_tokens:
                token = claim_tokens[which % len(claim_tokens)]
                rid = await pool.fetchval(
                    "SELECT registration_id FROM registrations WHERE claim_token_hash = $1",
                    token_hash(token),
                )
                if verb == "claim":
                    await start_claim(ctx, token, f"q{which}@example.net", CALLER)
                elif verb == "mint" and (link := await current_link(ctx, rid)) is not None:
                    codes[token] = (await issue_otp(ctx, link[1], CALLER)).otp
                else:
                    right = codes.get(token, "000000")
                    code = right if verb == "right" else f"{(int(right) + 1) % 1_000_000:06d}"
                    await complete_claim(ctx, token, code, CALLER)
    clock.advance(timedelta(hours=2))
    await worker.run_once()
    events = await expiry_events(pool)
    attempts = [e.event.attempt_id for e in events if isinstance(e.event, ClaimAttemptExpired)]
    assert len(attempts) == len(set(attempts))
    exactly_once([e for e in events if not isinstance(e.event, ClaimAttemptExpired)])
    assert await worker.lag() == timedelta(0)
    live = await snapshot(pool)
    async with owner_pool.acquire() as conn:  # TRUNCATE: the owner's
        await rebuild(conn)
    assert await snapshot(pool) == live


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: [tuple(r.values()) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY 1")]
        for table in TABLES
    }


async def test_a_v06_token_minted_while_its_registration_is_read_ends_with_it(
    store: EventStore, pool: asyncpg.Pool, clock: ManualClock, short_ctx: Context
) -> None:
    """A V6 exchange committing after the worker read a v0.6 registration it is about to
    expire (just before its end): the append sees the unseen token under the append lock and
    the item is decided again, so the registration ends with both its tokens in one append."""
    registered = await register_anonymous_v06(short_ctx, CALLER)
    first = await exchange(short_ctx, registered.identity_assertion, CALLER)
    clock.advance(timedelta(minutes=29))
    case = Case("default", registered.registration_id, None)
    stale = (await read_states(pool, [case]))[case]
    late = await exchange(short_ctx, registered.identity_assertion, CALLER)
    assert late.expires_at == registered.claim_token_expires  # cut to the registration's end
    clock.advance(timedelta(minutes=2))
    worker = ExpiryWorker(pool, store=store, clock=clock)
    assert await worker._settle(case, stale, clock.now()) == (3, True)
    assert worker.stats.conflicts == 1
    ended = {r.stream_id: r.type for r in await expiry_events(pool)}
    assert ended == {
        registered.registration_id: "registration.expired",
        first.credential_id: "credential.expired",  # its own 20 minutes came first
        late.credential_id: "credential.revoked",
    }
