"""The registration state the v0.6 door needs (docs/design/v06-dialect.md, section 3.1):
each `evolve` row of the design's table, given events, then the folded state; `ended` and
`stage`; the delegation's revocation count; and snapshots saved before these fields existed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from events.delegation import (
    DelegationCreated,
    DelegationEvent,
    DelegationRevoked,
    DelegationUsed,
)
from events.registration import (
    ClaimAttemptDenied,
    ClaimAttemptStarted,
    ClaimDelivered,
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationErased,
    RegistrationEvent,
    RegistrationExpired,
    RegistrationKind,
    RegistrationRevoked,
    StepUp,
)
from service.domain.registration import Registration, evolve, fold
from service.domain.trust_list import fold_delegation

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
TTL = timedelta(days=1)
STEP_UP = StepUp(
    delegation_id="dlg_1", issuer="https://idp.example", subject_sealed="pii1.usr_1.x",
    user_id="usr_1", matched_by="email", jti="jti-1", client_id="https://agent.example",
    audience="http://127.0.0.1:8000/api/",
)  # fmt: skip


def created(kind: RegistrationKind = "anonymous") -> RegistrationCreated:
    """A v0.6 registration as V1 records it: no key; pre-claim scopes only for anonymous."""
    return RegistrationCreated(
        registration_id="reg_1",
        kind=kind,
        requested_credential_type="access_token",
        claim_token_hash="c" * 64,
        expires_at=T0 + TTL,
        pre_claim_scopes=("api.read",) if kind == "anonymous" else (),
        post_claim_scopes=("api.read", "api.write"),
        dialect="v06",
        step_up=STEP_UP if kind == "id_jag" else None,
    )


def started(n: int = 1) -> ClaimAttemptStarted:
    return ClaimAttemptStarted(
        attempt_id=f"cla_{n}",
        attempt_token_hash=f"cvt-hash-{n}",
        email_sealed=f"pii1.cla_{n}.hint",
        email_index="idx-ana",
        link_expires_at=T0 + timedelta(minutes=10),
        ceremony="user_code",
    )


def code(n: int = 1) -> OtpIssued:
    return OtpIssued(
        attempt_id=f"cla_{n}", otp_hash=f"hmac-{n}", expires_at=T0 + timedelta(minutes=10)
    )


def claimed(n: int = 1) -> RegistrationClaimed:
    return RegistrationClaimed(
        attempt_id=f"cla_{n}",
        user_id="usr_1",
        auth_method="email_link",
        max_deliveries=3,
        deliver_until=T0 + timedelta(minutes=20),
    )


def given_(*events: RegistrationEvent) -> Registration:
    state = fold(list(events))
    assert state is not None
    return state


@pytest.mark.parametrize(
    ("kind", "status"),
    [("anonymous", "unclaimed"), ("service_auth", "pending_claim"), ("id_jag", "pending_claim")],
)
def test_created_v06_starts_as_its_kind_says(kind: RegistrationKind, status: str) -> None:
    """created (v06): anonymous waits unclaimed; service_auth and a step-up wait for their
    ceremony; the dialect and the step-up are kept."""
    state = given_(created(kind))
    assert (state.status, state.dialect, state.credential_id) == (status, "v06", None)
    assert state.step_up == (STEP_UP if kind == "id_jag" else None)
    assert (state.stage, state.erased, state.max_deliveries, state.deliveries) == (0, False, 0, 0)


def test_a_user_code_attempt_is_challenged_with_its_one_code() -> None:
    """attempt_started + otp_issued right after it: the ceremony is kept, the attempt is
    challenged and has minted its one code."""
    state = given_(created("service_auth"), started(), code())
    attempt = state.attempt
    assert attempt is not None
    assert (attempt.ceremony, attempt.status, attempt.mints) == ("user_code", "challenged", 1)
    assert (attempt.otp_hash, attempt.email_index) == ("hmac-1", "idx-ana")
    assert state.status == "pending_claim"


def test_denied_ends_the_attempt_and_its_code() -> None:
    """claim.attempt_denied: the attempt is `denied` (terminal, no code left); the
    registration itself stays open for a new attempt."""
    state = given_(
        created("service_auth"), started(), code(), ClaimAttemptDenied(attempt_id="cla_1")
    )
    attempt = state.attempt
    assert attempt is not None
    assert (attempt.status, attempt.live, attempt.otp_hash) == ("denied", False, None)
    assert state.status == "pending_claim"
    assert not state.ended(T0)


def test_denying_another_attempt_than_the_current_one_is_refused() -> None:
    """A denial names the current attempt; any other is a log that does not fold."""
    with pytest.raises(ValueError, match="cla_9"):
        given_(created("service_auth"), started(), ClaimAttemptDenied(attempt_id="cla_9"))


def test_claimed_records_the_delivery_allowance_and_binds_no_credential() -> None:
    """registration.claimed (v0.6): stage 1, the user, the allowance; no credential yet."""
    state = given_(created(), started(), code(), claimed())
    assert (state.status, state.stage, state.user_id, state.credential_id) == (
        "claimed", 1, "usr_1", None,
    )  # fmt: skip
    assert (state.max_deliveries, state.deliveries) == (3, 0)
    assert state.deliver_until == T0 + timedelta(minutes=20)
    assert state.attempt is not None
    assert state.attempt.status == "completed"


def test_each_delivery_is_counted() -> None:
    """claim.delivered: deliveries + 1, nothing else."""
    before = given_(created(), started(), code(), claimed())
    after = given_(
        created(), started(), code(), claimed(),
        ClaimDelivered(credential_id="cred_1"), ClaimDelivered(credential_id="cred_2"),
    )  # fmt: skip
    assert (after.deliveries, after.version) == (2, before.version + 2)
    assert (after.status, after.max_deliveries) == ("claimed", 3)


@pytest.mark.parametrize("stage", ["unclaimed", "pending", "claimed"])
def test_revoked_ends_the_registration_and_voids_a_live_attempt(stage: str) -> None:
    """registration.revoked: status `revoked` from any stage, a live attempt void."""
    history: list[RegistrationEvent] = [created()]
    if stage != "unclaimed":
        history += [started(), code()]
    if stage == "claimed":
        history.append(claimed())
    state = given_(*history, RegistrationRevoked(reason="operator", note="incident 9"))
    assert state.status == "revoked"
    assert state.ended(T0)
    if stage == "pending":
        assert state.attempt is not None
        assert (state.attempt.status, state.attempt.otp_hash) == ("void", None)
    if stage == "claimed":
        assert state.attempt is not None
        assert state.attempt.status == "completed"  # a completed attempt stays what it was


def test_erased_is_remembered() -> None:
    """registration.erased: the live attempt void as before, and `erased` set: it has ended."""
    state = given_(created("service_auth"), started(), code(), RegistrationErased(reason="gdpr"))
    assert state.erased
    assert state.attempt is not None
    assert state.attempt.status == "void"
    assert state.status == "pending_claim"
    assert state.ended(T0)


def test_ended_and_stage() -> None:
    """`ended`: expired or revoked by event, erased, or unclaimed past its TTL (a claimed
    registration ignores it); `stage`: 1 once claimed."""
    open_one = given_(created())
    assert not open_one.ended(T0 + TTL - timedelta(seconds=1))
    assert open_one.ended(T0 + TTL)
    assert given_(created(), RegistrationExpired(reason="ttl")).ended(T0)
    claimed_one = given_(created(), started(), code(), claimed())
    assert not claimed_one.ended(T0 + 10 * TTL)
    assert (open_one.stage, claimed_one.stage) == (0, 1)


def test_a_v1_registration_keeps_the_v1_defaults() -> None:
    """A v1 registration (created without the new fields) folds to dialect v1, ceremony
    email, no allowance: what it always was."""
    v1 = RegistrationCreated(
        registration_id="reg_1", kind="verified_email", requested_credential_type="api_key",
        claim_token_hash="c" * 64, expires_at=T0 + TTL, pre_claim_scopes=(),
        post_claim_scopes=("api.read",),
    )  # fmt: skip
    first = ClaimAttemptStarted(
        attempt_id="cla_1", attempt_token_hash="t", email_sealed="s", email_index="i",
        link_expires_at=T0 + timedelta(minutes=10),
    )  # fmt: skip
    done = RegistrationClaimed(attempt_id="cla_1", user_id="usr_1", credential_id="cred_1")
    state = given_(v1, first, code(), done)
    assert (state.dialect, state.step_up, state.credential_id) == ("v1", None, "cred_1")
    assert state.attempt is not None
    assert state.attempt.ceremony == "email"
    assert (state.max_deliveries, state.deliver_until) == (0, None)


def test_a_snapshot_saved_before_the_v06_fields_decodes_with_their_defaults() -> None:
    """registration_snapshots rows written by the previous release lack the new fields:
    they decode (service.commands.registration_state) to what a v1 registration is."""
    state = given_(created(), started(), code())
    encoded = msgspec.json.decode(msgspec.json.encode(state))
    for new in ("dialect", "step_up", "erased", "max_deliveries", "deliveries", "deliver_until"):
        del encoded[new]
    del encoded["attempt"]["ceremony"]
    old = msgspec.json.decode(msgspec.json.encode(encoded), type=Registration)
    assert (old.dialect, old.step_up, old.erased, old.deliveries) == ("v1", None, False, 0)
    assert old.attempt is not None
    assert old.attempt.ceremony == "email"
    assert msgspec.json.decode(msgspec.json.encode(state), type=Registration) == state


def test_the_step_up_survives_a_snapshot() -> None:
    """A step-up registration's snapshot keeps its nested StepUp."""
    state = given_(created("id_jag"), started(), code())
    assert msgspec.json.decode(msgspec.json.encode(state), type=Registration) == state


def test_a_delegation_counts_its_revocations() -> None:
    """`revocations`: the generation an assertion for the subject must carry; a use after a
    revocation makes it usable again but does not lower the count."""
    made = DelegationCreated(
        delegation_id="dlg_1", issuer="https://idp.example", audience="https://us.example",
        subject_sealed="pii1.x", user_id="usr_1", matched_by="step_up",
    )  # fmt: skip
    used = DelegationUsed(
        jti="j1", client_id="https://agent.example", audience="https://us.example/api/"
    )
    revoked = DelegationRevoked(reason="logout", jti="j2")
    history: list[tuple[DelegationEvent, int]] = [
        (made, 1), (used, 2), (revoked, 3), (used, 4), (revoked, 5),
    ]  # fmt: skip
    counts = []
    for n in range(1, len(history) + 1):
        state = fold_delegation(history[:n])
        assert state is not None
        counts.append((state.revocations, state.revoked))
    assert counts == [(0, False), (0, False), (1, True), (1, False), (2, True)]


def test_evolve_refuses_v06_events_before_creation() -> None:
    """The new events, like the old ones, need the registration to exist."""
    for event in (
        ClaimDelivered(credential_id="cred_1"),
        RegistrationRevoked(reason="operator"),
        ClaimAttemptDenied(attempt_id="cla_1"),
    ):
        with pytest.raises(ValueError, match=r"before registration\.created"):
            evolve(None, event)
