"""E8's outcomes for the registration's pre-claim key: `decide_complete` decides them, with
the claim or the lock, and the command only appends them (service/commands/claim.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.credential import CredentialRescoped, CredentialRevoked
from events.registration import (
    ClaimAttemptLocked,
    ClaimAttemptStarted,
    OtpFailed,
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationEvent,
    RegistrationExpired,
)
from service.domain.claim import (
    Decision,
    NewAttempt,
    OtpLimits,
    decide_complete,
    decide_start_claim,
    kept_key,
)
from service.domain.credentials import REVOKED_WITH_REGISTRATION
from service.domain.errors import ProtocolError
from service.domain.registration import Registration, evolve, fold

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
LIMITS = OtpLimits(max_code_misses=3, max_mints=4, max_registration_misses=5)
POST = ("api.read", "api.write")


def registration(kind: str, *, misses: int = 0, codes: int = 1) -> Registration:
    """A registration of `kind` with a live attempt, `codes` minted, `misses` wrong tries
    spread so that no code is voided (a fresh code after every two misses)."""
    events: list[RegistrationEvent] = [
        RegistrationCreated(
            registration_id="reg_1",
            kind=kind,  # type: ignore[arg-type]
            requested_credential_type="api_key",
            claim_token_hash="c" * 64,
            expires_at=T0 + timedelta(days=1),
            pre_claim_scopes=("api.read",),
            post_claim_scopes=POST,
            credential_id="cred_key" if kind == "anonymous" else None,
        ),
        ClaimAttemptStarted(
            attempt_id="cla_1",
            attempt_token_hash="t1",
            email_sealed="sealed",
            email_index="idx",
            link_expires_at=T0 + timedelta(minutes=10),
        ),
    ]
    code = OtpIssued(attempt_id="cla_1", otp_hash="h", expires_at=T0 + timedelta(minutes=10))
    for n in range(misses):
        if n % 2 == 0:
            events.append(code)
        events.append(OtpFailed(attempt_id="cla_1", reason="mismatch", code_voided=False))
    events += [code] * codes
    state = fold(events)
    assert state is not None
    return state


def complete(state: Registration, *, right: bool, credential_id: str) -> Decision:
    return decide_complete(
        state,
        otp_matches=lambda _attempt, _hash: right,
        now=T0 + timedelta(minutes=1),
        limits=LIMITS,
        user_id="usr_1",
        credential_id=credential_id,
    )


def test_the_anonymous_flow_keeps_its_key() -> None:
    """An anonymous registration's claim binds its own pre-claim key; a verified-email one's
    a credential still to mint."""
    assert kept_key(registration("anonymous")) == "cred_key"
    assert kept_key(registration("verified_email")) is None


def test_the_right_code_rescopes_the_kept_key_with_the_claim() -> None:
    """Anonymous flow: the claim binds the key, which gets the post-claim scopes and the user."""
    decision = complete(registration("anonymous"), right=True, credential_id="cred_key")
    claimed = RegistrationClaimed(attempt_id="cla_1", user_id="usr_1", credential_id="cred_key")
    assert (decision.events, decision.error) == ((claimed,), None)
    assert decision.credential == (CredentialRescoped(scopes=POST, user_id="usr_1"),)
    assert decision.claimed == claimed


def test_the_right_code_binds_the_credential_the_command_mints() -> None:
    """Verified-email flow: the claim names the new credential's id; no key's event."""
    decision = complete(registration("verified_email"), right=True, credential_id="cred_new")
    claimed = RegistrationClaimed(attempt_id="cla_1", user_id="usr_1", credential_id="cred_new")
    assert (decision.events, decision.credential, decision.error) == ((claimed,), (), None)
    assert decision.claimed == claimed


def test_a_wrong_code_below_the_limit_counts_and_leaves_the_key() -> None:
    """A miss is recorded and answered otp_invalid; nothing is claimed, the key untouched."""
    decision = complete(registration("anonymous", misses=3), right=False, credential_id="cred_key")
    failed = OtpFailed(attempt_id="cla_1", reason="mismatch", code_voided=False)
    assert decision.events == (failed,)
    assert decision.error is not None
    assert decision.error.code == "otp_invalid"
    assert (decision.credential, decision.claimed) == ((), None)


def test_the_miss_that_locks_revokes_the_pre_claim_key() -> None:
    """§6.4 + R7: the registration's last allowed miss locks the attempt, ends the
    registration, and revokes its key (registration_expired) in the same decision."""
    state = registration("anonymous", misses=LIMITS.max_registration_misses - 1)
    decision = complete(state, right=False, credential_id="cred_key")
    assert decision.events == (
        OtpFailed(attempt_id="cla_1", reason="mismatch", code_voided=False),
        ClaimAttemptLocked(attempt_id="cla_1"),
        RegistrationExpired(reason="locked"),
    )
    assert decision.credential == (CredentialRevoked(reason=REVOKED_WITH_REGISTRATION),)
    assert decision.error is not None
    assert decision.error.code == "otp_invalid"
    assert decision.claimed is None


def test_a_lock_without_a_key_revokes_nothing() -> None:
    """A verified-email registration holds no key before its claim: the lock ends it alone."""
    state = registration("verified_email", misses=LIMITS.max_registration_misses - 1)
    decision = complete(state, right=False, credential_id="cred_new")
    assert isinstance(decision.events[-1], RegistrationExpired)
    assert decision.credential == ()


def test_refusals_touch_neither_stream() -> None:
    """Claimed, expired, no code: refused with no event for the registration or its key."""
    anonymous = registration("anonymous")
    claimed = complete(anonymous, right=True, credential_id="cred_key")
    after_claim = evolve(anonymous, claimed.events[0])  # type: ignore[arg-type]
    locked = registration("anonymous", misses=LIMITS.max_registration_misses - 1)
    for event in complete(locked, right=False, credential_id="cred_key").events:
        locked = evolve(locked, event)  # type: ignore[arg-type]
    for state, code in (
        (after_claim, "previously_claimed"),
        (locked, "claim_expired"),
        (registration("anonymous", codes=0), "otp_not_generated"),
    ):
        decision = complete(state, right=True, credential_id="cred_key")
        assert (decision.events, decision.credential) == ((), ())
        assert decision.error is not None
        assert decision.error.code == code


@given(
    kind=st.sampled_from(["anonymous", "verified_email"]),
    misses=st.integers(0, LIMITS.max_registration_misses - 1),
    right=st.booleans(),
)
def test_the_key_changes_only_with_a_claim_or_a_lock(kind: str, misses: int, right: bool) -> None:
    """Whatever the try: the key is re-scoped exactly when its own registration's claim binds
    it, revoked exactly when the registration locks, and never both."""
    state = registration(kind, misses=misses)
    bound = kept_key(state) or "cred_new"
    decision = complete(state, right=right, credential_id=bound)
    locks = any(isinstance(e, RegistrationExpired) for e in decision.events)
    holds_key = state.credential_id is not None
    rescoped = [e for e in decision.credential if isinstance(e, CredentialRescoped)]
    revoked = [e for e in decision.credential if isinstance(e, CredentialRevoked)]
    assert bool(rescoped) == (decision.claimed is not None and holds_key)
    assert bool(revoked) == (locks and holds_key)
    assert len(decision.credential) <= 1
    assert (decision.claimed is not None) == right


def test_a_v06_claim_token_is_refused_at_the_v1_door() -> None:
    """Design section 3.4: E5 and E8 answer invalid_claim_token for a registration made at
    /agent/identity, even with a live code (its agent could otherwise claim it alone)."""
    created = RegistrationCreated(
        registration_id="reg_6", kind="anonymous", requested_credential_type="access_token",
        claim_token_hash="c" * 64, expires_at=T0 + timedelta(days=1),
        pre_claim_scopes=("api.read",), post_claim_scopes=POST, dialect="v06",
    )  # fmt: skip
    v06 = fold([created])
    assert v06 is not None
    new = NewAttempt(attempt_id="cla_2", token_hash="t2", email_index="idx", email_sealed="")
    with pytest.raises(ProtocolError) as start:
        decide_start_claim(v06, new, now=T0, link_ttl=timedelta(minutes=10))
    assert start.value.code == "invalid_claim_token"
    assert "/agent/identity/claim" in start.value.message
    coded = replace(registration("anonymous"), dialect="v06")  # with a live code
    done = complete(coded, right=True, credential_id="cred_key")
    assert (done.events, done.claimed) == ((), None)
    assert done.error is not None
    assert done.error.code == "invalid_claim_token"
    assert complete(registration("anonymous"), right=True, credential_id="cred_key").claimed
