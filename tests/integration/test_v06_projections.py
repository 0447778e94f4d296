"""The read models of the v0.6 door's events (migration 0020, docs/design/v06-dialect.md,
section 4), written inline by the runtime role, under the write guards, and equal to a
rebuild from the log (`replay --verify`).

No command records these events yet (later slices do); the histories below are what they
will record, appended through the commands' own `Context.record`."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from events.catalogue import Event
from events.clock import ManualClock
from events.credential import STREAM_TYPE as CREDENTIAL
from events.credential import CredentialIssued
from events.delegation import STREAM_TYPE as DELEGATION
from events.delegation import DelegationCreated, DelegationRevoked, DelegationUsed
from events.registration import STREAM_TYPE as REGISTRATION
from events.registration import (
    ClaimAttemptDenied,
    ClaimAttemptStarted,
    ClaimDelivered,
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationKind,
    RegistrationRevoked,
    StepUp,
)
from events.store import EventStore
from projections.replay import verify
from service.commands.context import Caller, Change, Context
from tests.support.commands import command_context

V06 = Caller(request_id="req-v06", door="v06", dialect="0.6.0")
STEP_UP = StepUp(
    delegation_id="dlg_v06", issuer="https://idp.example", subject_sealed="pii1.usr_v06.x",
    user_id="usr_v06", matched_by="email", jti="jti-1", client_id="https://agent.example",
)  # fmt: skip


def created(rid: str, kind: RegistrationKind) -> RegistrationCreated:
    return RegistrationCreated(
        registration_id=rid,
        kind=kind,
        requested_credential_type="access_token",
        claim_token_hash=f"claim-{rid}",
        expires_at=ManualClock().now() + timedelta(days=1),
        pre_claim_scopes=(),
        post_claim_scopes=("api.read", "api.write"),
        dialect="v06",
        step_up=STEP_UP if kind == "id_jag" else None,
    )


def attempt(ctx: Context, rid: str, n: int) -> list[ClaimAttemptStarted | OtpIssued]:
    ends = ctx.clock.now() + timedelta(minutes=10)
    return [
        ClaimAttemptStarted(
            attempt_id=f"cla_{rid}_{n}", attempt_token_hash=f"cvt-{rid}-{n}",
            email_sealed=f"pii1.cla_{rid}_{n}.hint", email_index="idx-ana",
            link_expires_at=ends, ceremony="user_code",
        ),
        OtpIssued(attempt_id=f"cla_{rid}_{n}", otp_hash=f"hmac-{n}", expires_at=ends),
    ]  # fmt: skip


async def append(ctx: Context, stream: tuple[str, str], version: int, *events: Event) -> None:
    change = Change(ctx.stream(*stream), version, events)
    await ctx.record([change], metadata=V06.envelope(), now=ctx.clock.now())


async def row(pool: asyncpg.Pool, table: str, key: str, value: str) -> dict[str, object]:
    found = await pool.fetchrow(f"SELECT * FROM {table} WHERE {key} = $1", value)
    assert found is not None
    return dict(found)


async def test_a_service_auth_registration_through_deny_claim_delivery_and_revocation(
    store: EventStore, pool: asyncpg.Pool, owner_database_url: str
) -> None:
    """dialect v06; a denied attempt loses its link (404 later); the claim, a delivery with
    its credential, then an operator's revocation: status `revoked`; replay finds it equal."""
    ctx = await command_context(store, pool)
    reg = (REGISTRATION, "reg_sa")
    await append(ctx, reg, 0, created("reg_sa", "service_auth"), *attempt(ctx, "reg_sa", 1))
    first = await row(pool, "registrations", "registration_id", "reg_sa")
    assert (first["dialect"], first["delegation_id"], first["status"]) == (
        "v06", None, "pending_claim",
    )  # fmt: skip
    assert (first["attempt_status"], first["attempt_token_hash"]) == ("challenged", "cvt-reg_sa-1")

    await append(ctx, reg, 3, ClaimAttemptDenied(attempt_id="cla_reg_sa_1"))
    denied = await row(pool, "registrations", "registration_id", "reg_sa")
    assert (denied["attempt_status"], denied["attempt_token_hash"]) == ("denied", None)

    await append(ctx, reg, 4, *attempt(ctx, "reg_sa", 2))
    claim = RegistrationClaimed(
        attempt_id="cla_reg_sa_2", user_id="usr_v06", auth_method="email_link",
        max_deliveries=3, deliver_until=ctx.clock.now() + timedelta(minutes=10),
    )  # fmt: skip
    await append(ctx, reg, 6, claim)
    issued = CredentialIssued(
        credential_id="cred_sa", kind="access_token", token_hash="t" * 64,
        scopes=("api.read", "api.write"), issued_via="service_auth", registration_id="reg_sa",
        user_id="usr_v06", expires_at=ctx.clock.now() + timedelta(hours=1),
    )  # fmt: skip
    await ctx.record(
        [
            Change(ctx.stream(*reg), 7, [ClaimDelivered(credential_id="cred_sa")]),
            Change(ctx.stream(CREDENTIAL, "cred_sa"), 0, [issued]),
        ],
        metadata=V06.envelope(),
        now=ctx.clock.now(),
    )
    delivered = await row(pool, "registrations", "registration_id", "reg_sa")
    assert (delivered["status"], delivered["user_id"], delivered["version"]) == (
        "claimed", "usr_v06", 8,
    )  # fmt: skip
    credential = await row(pool, "credentials", "credential_id", "cred_sa")
    assert (credential["issued_via"], credential["status"]) == ("service_auth", "active")

    await append(ctx, reg, 8, RegistrationRevoked(reason="operator", note="incident 9"))
    revoked = await row(pool, "registrations", "registration_id", "reg_sa")
    assert (revoked["status"], revoked["attempt_status"], revoked["version"]) == (
        "revoked", "completed", 9,
    )  # fmt: skip
    report = await verify(owner_database_url)
    assert report.differences == []


async def test_a_superseded_step_up_and_a_twice_revoked_delegation(
    store: EventStore, pool: asyncpg.Pool, owner_database_url: str
) -> None:
    """A step-up registration carries its subject's delegation id; a revocation voids its live
    attempt and drops its link. Each `delegation.revoked` adds one to the generation."""
    ctx = await command_context(store, pool)
    reg = (REGISTRATION, "reg_up")
    await append(ctx, reg, 0, created("reg_up", "id_jag"), *attempt(ctx, "reg_up", 1))
    opened = await row(pool, "registrations", "registration_id", "reg_up")
    assert (opened["kind"], opened["dialect"], opened["delegation_id"]) == (
        "id_jag", "v06", "dlg_v06",
    )  # fmt: skip
    await append(ctx, reg, 3, RegistrationRevoked(reason="superseded"))
    ended = await row(pool, "registrations", "registration_id", "reg_up")
    assert (ended["status"], ended["attempt_status"], ended["attempt_token_hash"]) == (
        "revoked", "void", None,
    )  # fmt: skip

    dlg = (DELEGATION, "dlg_v06")
    made = DelegationCreated(
        delegation_id="dlg_v06", issuer="https://idp.example", audience=ctx.tenant.issuer,
        subject_sealed="pii1.usr_v06.x", user_id="usr_v06", matched_by="step_up",
    )  # fmt: skip
    used = DelegationUsed(
        jti="jti-2", client_id="https://agent.example", audience=ctx.tenant.resource
    )
    await append(ctx, dlg, 0, made, used)
    assert (await row(pool, "delegations", "delegation_id", "dlg_v06"))["generation"] == 0
    await append(ctx, dlg, 2, DelegationRevoked(reason="logout", jti="set-1"))
    await append(ctx, dlg, 3, used, DelegationRevoked(reason="operator"))
    twice = await row(pool, "delegations", "delegation_id", "dlg_v06")
    assert (twice["generation"], twice["uses"], twice["matched_by"]) == (2, 2, "step_up")
    report = await verify(owner_database_url)
    assert report.differences == []
