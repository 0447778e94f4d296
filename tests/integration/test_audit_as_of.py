"""Audit state as of any instant or log position, and the timeline, over a scripted history
driven through the real commands: register, claim (the key's scopes upgraded), a provider's
credentials, the provider's revocation, an expiry recorded late by the worker. Every step's
instant gives the state of that instant, and the same answers come back after a replay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from events.clock import ManualClock
from events.credential import CredentialExpired
from events.envelope import Metadata
from events.registration import CredentialKind
from events.store import EventStore
from projections.replay import replay
from service.audit.as_of import state
from service.audit.subjects import Bound, Subject, resolve
from service.audit.timeline import timeline
from service.commands.claim import complete_claim, issue_otp, start_claim
from service.commands.context import Caller, Change, Context
from service.commands.identity import register_id_jag
from service.commands.registration import register_anonymous
from service.commands.revocation import logout
from service.commands.trust_list import trust
from service.crypto.pii import Sealer
from service.crypto.signing import KeyRing
from service.mail.outbox import open_link_token
from service.providers.jwks import JwksCache
from service.settings import Settings
from service.tenancy.config import TenantConfig
from tests.support.idp import IdentityProvider
from tests.support.outbound import LOOPBACK_POLICY

SECRET = "s" * 40
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
AGENT = Caller(request_id="req-agent", client_ip="203.0.113.7")
OPERATOR = Caller(request_id="req-op", actor="admin")
EMAIL = "ana@example.net"


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def ctx(pool: asyncpg.Pool) -> AsyncIterator[Context]:
    clock = ManualClock(T0)
    store = EventStore(pool, clock=clock)  # recorded-at follows the manual clock too
    ring = KeyRing(SECRET)
    await ring.ensure_active(pool, clock.now())
    keys = JwksCache(clock=clock, allow_loopback_http=True, outbound=LOOPBACK_POLICY)
    settings = Settings(database_url="", nats_url="", secret_key=SECRET)
    try:
        yield Context(
            store=store,
            tenant=TenantConfig.from_settings(settings),
            sealer=Sealer(SECRET),
            secret_key=SECRET,
            clock=clock,
            keyring=ring,
            provider_keys=keys,
        )
    finally:
        await keys.close()
        await store.close()


@dataclass
class Story:
    """What the script did, and the instant and log position right after each step."""

    ids: dict[str, str] = field(default_factory=dict)
    steps: dict[str, tuple[datetime, int]] = field(default_factory=dict)


async def _step(ctx: Context, story: Story, name: str) -> None:
    assert isinstance(ctx.clock, ManualClock)
    story.steps[name] = (ctx.clock.now(), await ctx.store.head_position())
    ctx.clock.advance(timedelta(minutes=1))


async def _credential_of(ctx: Context, **where: str) -> str:
    (column, value), *_ = where.items()
    query = f"SELECT credential_id FROM credentials WHERE {column} = $1 ORDER BY issued_at DESC"
    return str(await ctx.pool.fetchval(query, value))


async def _script(ctx: Context, idp: IdentityProvider) -> Story:
    story, clock = Story(), ctx.clock
    assert isinstance(clock, ManualClock)
    reg = await register_anonymous(ctx, "api_key", AGENT)
    story.ids |= {
        "registration": reg.registration_id,
        "key": await _credential_of(ctx, registration_id=reg.registration_id),
    }
    await _step(ctx, story, "registered")
    started = await start_claim(ctx, reg.claim_token, EMAIL, AGENT)
    sealed = await ctx.pool.fetchval(
        "SELECT link_token_sealed FROM mail_outbox WHERE attempt_id = $1", started.claim_attempt_id
    )
    otp = await issue_otp(ctx, open_link_token(SECRET, started.claim_attempt_id, sealed), AGENT)
    await complete_claim(ctx, reg.claim_token, otp.otp, AGENT)
    story.ids["user"] = await ctx.pool.fetchval(
        "SELECT user_id FROM registrations WHERE registration_id = $1", reg.registration_id
    )
    await _step(ctx, story, "claimed")
    await trust(ctx, idp.trusted(link_by_verified_email=True), OPERATOR)  # opt-in (finding 2)
    kinds: tuple[tuple[str, CredentialKind], ...] = (
        ("provider_token", "access_token"),
        ("provider_key", "api_key"),
    )
    for name, kind in kinds:
        jag = idp.mint_id_jag(
            aud=ctx.tenant.issuer, now=clock.now(), sub="ana-at-idp", overrides={"email": EMAIL}
        )
        issued = await register_id_jag(ctx, jag, kind, AGENT)
        story.ids[name] = issued.credential.credential_id
        await _step(ctx, story, name)
    story.ids["delegation"] = await ctx.pool.fetchval("SELECT delegation_id FROM delegations")
    bye = idp.mint_logout_token(aud=ctx.tenant.issuer, now=clock.now(), sub="ana-at-idp")
    assert (await logout(ctx, bye, AGENT)).count == 2
    await _step(ctx, story, "provider_revoked")
    jag = idp.mint_id_jag(aud=ctx.tenant.issuer, now=clock.now(), sub="ana-at-idp")
    later = await register_id_jag(ctx, jag, "access_token", AGENT)
    story.ids["later_token"] = later.credential.credential_id
    assert later.credential.expires_at is not None
    story.steps["later_issued"] = (clock.now(), await ctx.store.head_position())
    deadline = later.credential.expires_at
    clock.set(deadline + timedelta(seconds=30))  # the worker gets to it half a minute late
    expired = Change(
        ctx.stream("credential", later.credential.credential_id), 1, [CredentialExpired()]
    )
    await ctx.record([expired], metadata=Metadata(actor="worker:expiry"), now=deadline)
    story.steps["expiry_recorded"] = (clock.now(), await ctx.store.head_position())
    story.steps["deadline"] = (deadline, 0)
    return story


async def _state(ctx: Context, kind: str, subject_id: str, bound: Bound) -> dict[str, Any]:
    async with ctx.pool.acquire() as conn:
        subject = await resolve(conn, ctx.tenant.tenant_id, kind, subject_id)
        return await state(conn, subject, bound, now=ctx.clock.now())


def _acting(answer: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str | None]]:
    return sorted(
        (c["credential_id"], tuple(c["scopes"]), c["issuer"]) for c in answer["could_act"]
    )


async def test_state_at_each_steps_instant_is_the_state_of_that_instant(
    ctx: Context, idp: IdentityProvider, owner_database_url: str
) -> None:
    story = await _script(ctx, idp)
    ids, at = story.ids, {name: instant for name, (instant, _) in story.steps.items()}
    read, both, provider = ("api.read",), ("api.read", "api.write"), idp.issuer
    key, token, api_key, later = (
        ids["key"],
        ids["provider_token"],
        ids["provider_key"],
        ids["later_token"],
    )
    Acting = list[tuple[str, tuple[str, ...], str | None]]
    expected_user: dict[str, Acting] = {
        "claimed": [(key, both, None)],
        "provider_token": [(key, both, None), (token, both, provider)],
        "provider_key": sorted(
            [(key, both, None), (token, both, provider), (api_key, both, provider)]
        ),
        "provider_revoked": [(key, both, None)],
        "later_issued": sorted([(key, both, None), (later, both, provider)]),
        "expiry_recorded": [(key, both, None)],
    }

    async def answers() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, acting in expected_user.items():
            answer = await _state(ctx, "user", ids["user"], Bound(at=at[name]))
            assert _acting(answer) == sorted(acting), name
            out[name] = answer
        first = await _state(ctx, "credential", key, Bound(at=at["registered"]))
        assert _acting(first) == [(key, read, None)]
        assert first["credential"]["user_id"] is None
        assert first["registration"]["status"] == "unclaimed"
        claimed = await _state(ctx, "registration", ids["registration"], Bound(at=at["claimed"]))
        assert (claimed["registration"]["status"], claimed["registration"]["user_id"]) == (
            "claimed",
            ids["user"],
        )
        revoked = await _state(
            ctx, "delegation", ids["delegation"], Bound(at=at["provider_revoked"])
        )
        assert revoked["delegation"]["revoked"] is True
        assert {c["credential_id"]: c["end_reason"] for c in revoked["credentials"]} == {
            token: "logout",
            api_key: "logout",
        }
        out["first"], out["claimed_registration"], out["revoked_delegation"] = (
            first,
            claimed,
            revoked,
        )
        return out

    before = await answers()
    report = await replay(owner_database_url)  # replay runs as the owner
    assert report.differences == []
    assert await answers() == before  # the same answers from the rebuilt read models


async def test_an_expiry_counts_from_its_deadline_and_a_position_from_its_recording(
    ctx: Context, idp: IdentityProvider
) -> None:
    """At the deadline the token cannot act, recorded or not; the log cut just before the
    expiry was recorded still says `active`, yet not usable at the deadline."""
    story = await _script(ctx, idp)
    later, (deadline, _) = story.ids["later_token"], story.steps["deadline"]
    tick = timedelta(microseconds=1)
    just_before = await _state(ctx, "credential", later, Bound(at=deadline - tick))
    assert (just_before["credential"]["status"], just_before["credential"]["usable"]) == (
        "active",
        True,
    )
    at_deadline = await _state(ctx, "credential", later, Bound(at=deadline))
    assert at_deadline["credential"]["status"] == "expired"  # dated at its deadline
    assert at_deadline["credential"]["ended_at"] == deadline.isoformat()
    _, issued_position = story.steps["later_issued"]
    known_then = await _state(
        ctx, "credential", later, Bound(position=issued_position, at=deadline)
    )
    assert (known_then["credential"]["status"], known_then["credential"]["usable"]) == (
        "active",
        False,
    )
    by_position = await _state(ctx, "user", story.ids["user"], Bound(position=issued_position))
    assert by_position["as_of"]["instant"] == story.steps["later_issued"][0].isoformat()
    assert story.ids["later_token"] in {c["credential_id"] for c in by_position["could_act"]}


async def test_a_provider_and_unknown_subjects(ctx: Context, idp: IdentityProvider) -> None:
    story = await _script(ctx, idp)
    answer = await _state(ctx, "issuer", idp.issuer, Bound(at=story.steps["provider_key"][0]))
    assert answer["issuer"]["trusted"] is True
    assert answer["subject"]["id"].startswith("iss_")
    assert {c["credential_id"] for c in answer["could_act"]} == {
        story.ids["provider_token"],
        story.ids["provider_key"],
    }
    by_stream = await _state(ctx, "issuer", answer["subject"]["id"], Bound())
    assert by_stream["subject"]["issuer"] == idp.issuer
    with pytest.raises(LookupError, match="no credential cred_nope"):
        await _state(ctx, "credential", "cred_nope", Bound())


async def test_the_timeline_names_actor_ip_reason_and_correlation(
    ctx: Context, idp: IdentityProvider
) -> None:
    story = await _script(ctx, idp)
    async with ctx.pool.acquire() as conn:
        subject = await resolve(conn, ctx.tenant.tenant_id, "user", story.ids["user"])
        found = await timeline(conn, subject, Bound(), sealer=ctx.sealer)
        page = await timeline(conn, subject, Bound(), sealer=ctx.sealer, limit=3)
        # the registration's key and its attempt's (E5 and E7 sealed their callers' addresses
        # under the attempt's own key), as an erasure of the person destroys both
        attempt_id = await conn.fetchval(
            "SELECT attempt_id FROM registrations WHERE registration_id = $1",
            story.ids["registration"],
        )
        for erased_subject in (story.ids["registration"], attempt_id):
            await ctx.sealer.erase(conn, erased_subject)
        erased = await timeline(conn, subject, Bound(), sealer=ctx.sealer)
        sealed = await timeline(conn, subject, Bound(), sealer=None)
    entries = found.entries
    assert [e["position"] for e in entries] == sorted(e["position"] for e in entries)
    created = next(e for e in entries if e["type"] == "registration.created")
    assert (created["actor"], created["client_ip"], created["correlation_id"]) == (
        "agent",
        "203.0.113.7",
        "req-agent",
    )
    revoked = [e for e in entries if e["type"] == "credential.revoked"]
    assert {(e["reason"], e["actor"]) for e in revoked} == {("logout", f"provider:{idp.issuer}")}
    expired = next(e for e in entries if e["type"] == "credential.expired")
    assert (expired["actor"], expired["occurred_at"]) == (
        "worker:expiry",
        story.steps["deadline"][0].isoformat(),
    )
    assert [e["position"] for e in page.entries] == [e["position"] for e in entries[:3]]
    assert page.next_after == entries[2]["position"]
    ips = {e["client_ip"] for e in erased.entries if e["stream_id"] == story.ids["registration"]}
    assert ips == {"erased"}
    assert {e["client_ip"] for e in sealed.entries} <= {"sealed", None}


def test_subject_json_names_the_issuer_only_for_providers() -> None:
    assert Subject("user", "usr_1", "default").as_json() == {
        "kind": "user",
        "id": "usr_1",
        "tenant": "default",
    }
