"""V6 and the operator's revocation of v0.6 registrations (O-R), below HTTP, against a real
Postgres: a claimed registration (its claim recorded as V5 will record it) and an ID-JAG
subject's delegation exchange their assertions at the right generation only; revocation by
user and by provider ends the registrations in scope; the exchange's re-read under the append
lock keeps a token decided on a stale read from outliving the revocation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, cast

import asyncpg
import pytest

from events.delegation import STREAM_TYPE as DELEGATION
from events.delegation import DelegationCreated, DelegationRevoked
from events.envelope import Metadata, RecordedEvent
from events.errors import ConcurrencyConflict
from events.registration import STREAM_TYPE as REGISTRATION
from events.registration import (
    ClaimAttemptStarted,
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    StepUp,
)
from events.store import EventStore
from service.commands.agent_identity import register_anonymous_v06
from service.commands.context import Caller, Change, Context
from service.commands.revocation import revoke
from service.commands.tokens import _unmoved, exchange
from service.crypto.assertions import issue_assertion
from service.crypto.tokens import registration_id_for_identity, token_hash
from service.domain.errors import ProtocolError
from service.domain.exchange import Grant
from service.domain.trust_list import delegation_id_for
from tests.support.commands import command_context

AGENT = Caller(request_id="req-v06", client_ip="203.0.113.9", door="v06", dialect="0.6.0")
OPERATOR = Caller(request_id="req-op", actor="cli:test")
ISSUER = "https://idp.example"


@pytest.fixture
async def ctx(store: EventStore, pool: asyncpg.Pool) -> Context:
    return await command_context(store, pool)


def assertion(ctx: Context, sub: str, gen: int) -> str:
    token, _ = issue_assertion(ctx.keyring, issuer=ctx.tenant.issuer, sub=sub, gen=gen,
                               now=ctx.clock.now(), ttl=timedelta(hours=1))  # fmt: skip
    return token


async def refused(ctx: Context, token: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        await exchange(ctx, token, AGENT)
    assert caught.value.code == "invalid_grant"


async def credential(ctx: Context, plain: str) -> asyncpg.Record:
    row = await ctx.pool.fetchrow("SELECT * FROM credentials WHERE token_hash = $1",
                                  token_hash(plain))  # fmt: skip
    assert row is not None
    return row


async def claim(ctx: Context, rid: str, user_id: str) -> None:
    """The claim as V5 records it (user_code ceremony, no credential bound)."""
    now = ctx.clock.now()
    events = [
        ClaimAttemptStarted(attempt_id="cla_1", attempt_token_hash="t" * 64, email_sealed="x",
                            email_index="i", link_expires_at=now + timedelta(minutes=10),
                            ceremony="user_code"),
        OtpIssued(attempt_id="cla_1", otp_hash="h", expires_at=now + timedelta(minutes=10)),
        RegistrationClaimed(attempt_id="cla_1", user_id=user_id, auth_method="email_link"),
    ]  # fmt: skip
    await ctx.record([Change(ctx.stream(REGISTRATION, rid), 1, events)],
                     metadata=Metadata(actor="person"), now=now)  # fmt: skip


async def test_after_the_claim_only_gen_1_exchanges_and_revoking_the_user_ends_it(
    ctx: Context,
) -> None:
    """O-F: once claimed, the gen-0 assertion is refused and a gen-1 one buys the post-claim
    scopes for the claiming user; revoking that user ends the registration (O-R), so it
    buys nothing more, and ends the token too."""
    registered = await register_anonymous_v06(ctx, AGENT)
    rid = registered.registration_id
    await claim(ctx, rid, "usr_ana")
    await refused(ctx, registered.identity_assertion)
    token = await exchange(ctx, assertion(ctx, rid, 1), AGENT)
    assert token.scopes == ctx.tenant.post_claim_scopes
    row = await credential(ctx, token.plain)
    assert (row["user_id"], row["registration_id"], row["issued_via"]) == ("usr_ana", rid,
                                                                           "anonymous")  # fmt: skip
    revoked = await revoke(ctx, "user", "usr_ana", OPERATOR, "left the company")
    assert revoked.registration_ids == (rid,)
    assert revoked.credential_ids == (row["credential_id"],)
    await refused(ctx, assertion(ctx, rid, 1))
    status = await ctx.pool.fetchval(
        "SELECT status FROM registrations WHERE registration_id = $1", rid
    )
    assert status == "revoked"
    again = await revoke(ctx, "user", "usr_ana", OPERATOR)
    assert again.registration_ids == ()


async def test_an_id_jag_subject_exchanges_through_its_delegation(ctx: Context) -> None:
    """The subject's deterministic id names its delegation: every scope, the user, the
    provider and the delegation on the credential; a revocation of the delegation ends the
    older generation; revoking the provider ends its subject's step-up registration (O-R)."""
    audience = ctx.tenant.issuer
    dlg = delegation_id_for(ISSUER, "subject-1", audience)
    sub = registration_id_for_identity(ISSUER, "subject-1", audience)
    created = DelegationCreated(
        delegation_id=dlg,
        issuer=ISSUER,
        audience=audience,
        subject_sealed="x",
        user_id="usr_bo",
        matched_by="provisioned",
    )
    now = ctx.clock.now()
    await ctx.record([Change(ctx.stream(DELEGATION, dlg), 0, [created])],
                     metadata=Metadata(actor="test"), now=now)  # fmt: skip
    token = await exchange(ctx, assertion(ctx, sub, 0), AGENT)
    assert token.scopes == ctx.tenant.scopes_supported
    row = await credential(ctx, token.plain)
    assert (row["user_id"], row["registration_id"], row["issued_via"]) == ("usr_bo", sub, "id_jag")
    assert (row["issuer"], row["delegation_id"]) == (ISSUER, dlg)
    ended = DelegationRevoked(reason="logout", credential_ids=(row["credential_id"],))
    await ctx.record([Change(ctx.stream(DELEGATION, dlg), 1, [ended])],
                     metadata=Metadata(actor="test"), now=now)  # fmt: skip
    await refused(ctx, assertion(ctx, sub, 0))
    assert (await exchange(ctx, assertion(ctx, sub, 1), AGENT)).scopes
    await refused(ctx, assertion(ctx, registration_id_for_identity(ISSUER, "nobody", audience), 0))
    step_up = RegistrationCreated(
        registration_id="reg_stepup", kind="id_jag", requested_credential_type="access_token",
        claim_token_hash="s" * 64, expires_at=now + timedelta(days=1), pre_claim_scopes=(),
        post_claim_scopes=ctx.tenant.post_claim_scopes, dialect="v06",
        step_up=StepUp(delegation_id=dlg, issuer=ISSUER, subject_sealed="x", user_id="usr_bo",
                       matched_by="email", jti="j1", client_id="https://agent.example"),
    )  # fmt: skip
    await ctx.record([Change(ctx.stream(REGISTRATION, "reg_stepup"), 0, [step_up])],
                     metadata=Metadata(actor="test"), now=now)  # fmt: skip
    await refused(ctx, assertion(ctx, "reg_stepup", 0))  # a step-up's own id buys nothing
    revoked = await revoke(ctx, "issuer", ISSUER, OPERATOR)
    assert revoked.registration_ids == ("reg_stepup",)
    assert (
        len(revoked.credential_ids) == 2
    )  # both tokens (the revocation above named, not ended, one)


async def test_the_subject_is_read_again_under_the_append_lock(ctx: Context) -> None:
    """The `also` step: a grant decided on an older version of the registration's stream
    makes the append fail (and the command decide again); on the current one it passes."""
    registered = await register_anonymous_v06(ctx, AGENT)
    rid = registered.registration_id
    stale = Grant(stream_id=rid, version=0, scopes=(), issued_via="anonymous",
                  registration_id=rid, user_id=None)  # fmt: skip
    current = Grant(stream_id=rid, version=1, scopes=(), issued_via="anonymous",
                    registration_id=rid, user_id=None)  # fmt: skip
    async with ctx.pool.acquire() as proxy, proxy.transaction():
        conn = cast(asyncpg.Connection, proxy)
        await _unmoved(ctx.tenant.tenant_id, current)(conn)
        with pytest.raises(ConcurrencyConflict):
            await _unmoved(ctx.tenant.tenant_id, stale)(conn)


@dataclass(frozen=True)
class Interleaved(Context):
    """The real Context, with another command run once between a decision and its append:
    the interleaving a race would produce, made certain."""

    between: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    async def record(self, changes: Sequence[Change], **kwargs: Any) -> list[RecordedEvent]:
        while self.between:
            await self.between.pop()()
        return await super().record(changes, **kwargs)


async def test_no_token_outlives_an_operator_revocation_between_decision_and_append(
    ctx: Context,
) -> None:
    """An exchange decided before the registration's revocation and appended after it:
    refused, so no token of the registration escapes the revocation's credential pass."""
    registered = await register_anonymous_v06(ctx, AGENT)
    rid = registered.registration_id
    racing = Interleaved(**{f.name: getattr(ctx, f.name) for f in fields(ctx)})
    racing.between.append(lambda: revoke(ctx, "registration", rid, OPERATOR))
    await refused(racing, registered.identity_assertion)
    assert racing.between == []  # the revocation did run in between
    issued = await ctx.pool.fetchval(
        "SELECT count(*) FROM credentials WHERE registration_id = $1", rid
    )
    assert issued == 0
