"""Property: the read models are a function of the log alone.

For random sequences of protocol commands (registrations of both kinds, claims with several
emails, codes minted, right and wrong codes, time passing), rebuilding the projections from
an empty state gives exactly the rows the live run wrote inline.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.clock import ManualClock
from events.store import EventStore
from projections.runner import TABLES, rebuild
from service.commands.claim import complete_claim, issue_otp, start_claim
from service.commands.context import Caller, Context
from service.commands.registration import register_anonymous, register_verified_email
from service.crypto.pii import Sealer
from service.crypto.signing import KeyRing
from service.domain.errors import ProtocolError
from service.mail.outbox import open_link_token
from service.settings import Settings
from service.tenancy.config import TenantConfig

SECRET = "p" * 40
CALLER = Caller(request_id="prop", client_ip="198.51.100.1")
EMAILS = ("ana@example.net", "bob@example.net", "ANA@example.net")

Command = tuple[str, int, int]  # (verb, which registration, which email / how long)
commands = st.lists(
    st.tuples(
        st.sampled_from(
            ["anonymous", "email", "claim", "mint", "right", "wrong", "wait", "wait_long"]
        ),
        st.integers(0, 3),
        st.integers(0, 2),
    ),
    min_size=1,
    max_size=25,
)


async def _snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[object, ...]]]:
    shot = {}
    for table in TABLES:
        rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY 1")
        shot[table] = [tuple(r.values()) for r in rows]
    return shot


class Run:
    """Drives the commands the way agents and people would, remembering what they were told."""

    def __init__(self, ctx: Context, clock: ManualClock) -> None:
        self.ctx, self.clock = ctx, clock
        self.claim_tokens: list[str] = []
        self.codes: dict[str, str] = {}

    async def link_of(self, claim_token: str) -> str | None:
        row = await self.ctx.pool.fetchrow(
            """SELECT o.attempt_id, o.link_token_sealed FROM registrations r
               JOIN mail_outbox o ON o.attempt_id = r.attempt_id
               WHERE r.claim_token_hash = encode(sha256($1::text::bytea), 'hex')""",
            claim_token,
        )
        if row is None:
            return None
        return open_link_token(SECRET, row["attempt_id"], row["link_token_sealed"])

    async def step(self, verb: str, which: int, arg: int) -> None:
        ctx = self.ctx
        if verb == "anonymous":
            self.claim_tokens.append((await register_anonymous(ctx, "api_key", CALLER)).claim_token)
            return
        if verb == "email":
            registered = await register_verified_email(ctx, EMAILS[arg], "access_token", CALLER)
            self.claim_tokens.append(registered.claim_token)
            return
        if verb == "wait":
            self.clock.advance(timedelta(minutes=4))
            return
        if verb == "wait_long":
            self.clock.advance(timedelta(hours=13))
            return
        if not self.claim_tokens:
            return
        token = self.claim_tokens[which % len(self.claim_tokens)]
        if verb == "claim":
            await start_claim(ctx, token, EMAILS[arg], CALLER)
        elif verb == "mint":
            link = await self.link_of(token)
            if link is not None:
                self.codes[token] = (await issue_otp(ctx, link, CALLER)).otp
        elif verb in ("right", "wrong"):
            right = self.codes.get(token, "000000")
            otp = right if verb == "right" else f"{(int(right) + 1) % 1_000_000:06d}"
            await complete_claim(ctx, token, otp, CALLER)


@pytest.mark.timeout(600)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=commands)
async def test_rebuilding_from_the_log_gives_the_live_rows(
    script: list[Command], store: EventStore, pool: asyncpg.Pool, owner_pool: asyncpg.Pool
) -> None:
    """Whatever the command sequence, a rebuild from the log equals the live projections."""
    clock = ManualClock()
    ring = KeyRing(SECRET)
    await ring.ensure_active(pool, clock.now())
    ctx = Context(
        store=store,
        tenant=TenantConfig.from_settings(
            Settings(database_url="", nats_url="", secret_key=SECRET)
        ),
        sealer=Sealer(SECRET),
        secret_key=SECRET,
        clock=clock,
        keyring=ring,
    )
    run = Run(ctx, clock)
    for verb, which, arg in script:
        with contextlib.suppress(ProtocolError):  # refusals record what they must
            await run.step(verb, which, arg)
    live = await _snapshot(pool)
    async with owner_pool.acquire() as conn:  # TRUNCATE: the owner's
        applied = await rebuild(conn)
    assert applied == await store.head_position()
    assert await _snapshot(pool) == live
