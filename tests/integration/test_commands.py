"""The claim ceremony's commands against a real Postgres, below HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from events.clock import ManualClock
from events.store import EventStore
from projections.runner import TABLES
from service.commands.claim import complete_claim, issue_otp, start_claim
from service.commands.context import Caller, Context
from service.commands.registration import register_anonymous, register_verified_email
from service.crypto.tokens import token_hash
from service.domain.errors import ProtocolError
from service.mail.outbox import open_link_token
from tests.support.commands import SECRET, command_context

CALLER = Caller(request_id="req-1", client_ip="203.0.113.7")


@pytest.fixture
async def ctx(store: EventStore, pool: asyncpg.Pool) -> Context:
    return await command_context(store, pool)


async def _link_token_of(ctx: Context, attempt_id: str) -> str:
    """The mailer's view: the sealed link token from the outbox, opened with the secret."""
    row = await ctx.pool.fetchrow(
        "SELECT link_token_sealed FROM mail_outbox WHERE attempt_id = $1", attempt_id
    )
    assert row is not None
    return open_link_token(SECRET, attempt_id, row["link_token_sealed"])


async def test_anonymous_ceremony_rescopes_the_same_key(ctx: Context) -> None:
    """Register, claim, mint, complete: the key's row gets post-claim scopes and a user."""
    reg = await register_anonymous(ctx, "api_key", CALLER)
    assert reg.credential is not None
    row = await ctx.pool.fetchrow(
        "SELECT scopes, status, user_id FROM credentials WHERE token_hash = $1",
        token_hash(reg.credential),
    )
    assert row is not None
    assert (row["scopes"], row["status"], row["user_id"]) == (["api.read"], "active", None)
    started = await start_claim(ctx, reg.claim_token, "Ana@Example.net", CALLER)
    link = await _link_token_of(ctx, started.claim_attempt_id)
    challenge = await issue_otp(ctx, link, CALLER)
    done = await complete_claim(ctx, reg.claim_token, challenge.otp, CALLER)
    assert done.credential is None
    row = await ctx.pool.fetchrow(
        "SELECT scopes, user_id FROM credentials WHERE token_hash = $1", token_hash(reg.credential)
    )
    assert row is not None
    assert row["scopes"] == ["api.read", "api.write"]
    assert row["user_id"] is not None
    status = await ctx.pool.fetchval(
        "SELECT status FROM registrations WHERE registration_id = $1", reg.registration_id
    )
    assert status == "claimed"


async def test_racing_completes_issue_exactly_one_credential(ctx: Context) -> None:
    """Two right codes at once for an email registration: one credential, one refusal."""
    reg = await register_verified_email(ctx, "bob@example.net", "access_token", CALLER)
    attempt_id = await ctx.pool.fetchval(
        "SELECT attempt_id FROM registrations WHERE registration_id = $1", reg.registration_id
    )
    challenge = await issue_otp(ctx, await _link_token_of(ctx, attempt_id), CALLER)
    results = await asyncio.gather(
        complete_claim(ctx, reg.claim_token, challenge.otp, CALLER),
        complete_claim(ctx, reg.claim_token, challenge.otp, CALLER),
        return_exceptions=True,
    )
    refusals = [r for r in results if isinstance(r, ProtocolError)]
    assert [r.code for r in refusals] == ["previously_claimed"]
    issued = await ctx.pool.fetchval("SELECT count(*) FROM events WHERE type = 'credential.issued'")
    assert issued == 1


async def test_expired_registration_cannot_be_claimed(ctx: Context) -> None:
    """Past its TTL, E5 answers claim_expired and writes nothing."""
    reg = await register_anonymous(ctx, "api_key", CALLER)
    assert isinstance(ctx.clock, ManualClock)
    ctx.clock.advance(timedelta(seconds=ctx.tenant.registration_ttl))
    head = await ctx.store.head_position()
    with pytest.raises(ProtocolError) as caught:
        await start_claim(ctx, reg.claim_token, "ana@example.net", CALLER)
    assert caught.value.code == "claim_expired"
    assert await ctx.store.head_position() == head


async def test_no_plain_secret_or_email_in_any_table(ctx: Context) -> None:
    """After a ceremony, no table holds a key, claim token, link token, code or email."""
    reg = await register_anonymous(ctx, "api_key", CALLER)
    started = await start_claim(ctx, reg.claim_token, "carol@example.net", CALLER)
    link = await _link_token_of(ctx, started.claim_attempt_id)
    challenge = await issue_otp(ctx, link, CALLER)
    await complete_claim(ctx, reg.claim_token, challenge.otp, CALLER)
    assert reg.credential is not None
    secrets = [reg.credential, reg.claim_token, link, "carol@example.net", "203.0.113.7"]
    for table in ("events", "mail_outbox", "subject_keys", "signing_keys", *TABLES):
        dump = await ctx.pool.fetchval(
            f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t"
        )
        for secret in secrets:
            assert secret not in dump, f"{table} holds a plain secret"
    payloads = await ctx.pool.fetchval("SELECT string_agg(payload::text, ' ') FROM events")
    assert f'"{challenge.otp}"' not in payloads
