"""The registration aggregate's rules, given events, when a command, then events or a refusal."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.registration import (
    ClaimAttemptLocked,
    ClaimAttemptsErased,
    ClaimAttemptStarted,
    ClaimAttemptSuperseded,
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
    decide_issue_otp,
    decide_start_claim,
)
from service.domain.errors import ProtocolError
from service.domain.registration import (
    GROWTH_LIMIT,
    STREAM_LIMIT,
    Registration,
    evolve,
    fold,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
LINK = timedelta(seconds=600)
OTP = timedelta(seconds=600)
LIMITS = OtpLimits()


def created(kind: str = "anonymous") -> RegistrationCreated:
    return RegistrationCreated(
        registration_id="reg_1",
        kind=kind,  # type: ignore[arg-type]
        requested_credential_type="api_key",
        claim_token_hash="c" * 64,
        expires_at=T0 + timedelta(days=1),
        pre_claim_scopes=("api.read",),
        post_claim_scopes=("api.read", "api.write"),
        credential_id="cred_1" if kind == "anonymous" else None,
    )


def started(n: int = 1, email: str = "ana", at: datetime = T0) -> ClaimAttemptStarted:
    return ClaimAttemptStarted(
        attempt_id=f"cla_{n}",
        attempt_token_hash=f"t{n}",
        email_sealed=f"sealed-{email}",
        email_index=f"idx-{email}",
        link_expires_at=at + LINK,
    )


def issued(n: int = 1, at: datetime = T0) -> OtpIssued:
    return OtpIssued(attempt_id=f"cla_{n}", otp_hash=f"h{n}", expires_at=at + OTP)


def given_(*events: RegistrationEvent) -> Registration:
    state = fold(list(events))
    assert state is not None
    return state


def new_attempt(n: int = 2, email: str = "ana") -> NewAttempt:
    return NewAttempt(f"cla_{n}", f"t{n}", f"idx-{email}", f"sealed-{email}")


def complete(state: Registration, *, right: bool, at: datetime = T0) -> Decision:
    return decide_complete(
        state,
        otp_matches=lambda _attempt, _hash: right,
        now=at,
        limits=LIMITS,
        user_id="usr_1",
        credential_id="cred_1",
    )


def apply(state: Registration, decision: Decision) -> Registration:
    for event in decision.events:
        state = evolve(state, event)  # type: ignore[arg-type]
    return state


def test_anonymous_starts_unclaimed_and_email_pending() -> None:
    """R1/R2: the first status depends on the flow."""
    assert given_(created()).status == "unclaimed"
    assert given_(created("verified_email"), started()).status == "pending_claim"


def test_first_claim_starts_an_attempt_with_a_link_window() -> None:
    """E5 on an unclaimed anonymous registration starts attempt 1 with a 10-minute link."""
    decision = decide_start_claim(given_(created()), new_attempt(1), now=T0, link_ttl=LINK)
    assert decision.events == (started(1),)


def test_same_email_inside_the_window_echoes_the_attempt() -> None:
    """R4: no new events, so no new mail."""
    state = given_(created(), started(1))
    assert decide_start_claim(state, new_attempt(2), now=T0, link_ttl=LINK).events == ()


def test_other_email_supersedes_the_attempt_and_voids_its_code() -> None:
    """R3 [OURS]: the old attempt is superseded and its code no longer completes (W5)."""
    state = given_(created(), started(1), issued(1))
    decision = decide_start_claim(state, new_attempt(2, "bob"), now=T0, link_ttl=LINK)
    assert decision.events == (
        ClaimAttemptSuperseded(attempt_id="cla_1", superseded_by="cla_2"),
        started(2, "bob"),
    )
    after = apply(state, decision)
    refused = complete(after, right=True)
    assert refused.error is not None
    assert refused.error.code == "otp_not_generated"


def test_same_email_after_the_window_starts_a_new_attempt() -> None:
    """R3: the link window over, the same email gets a fresh attempt."""
    state = given_(created(), started(1))
    later = T0 + LINK + timedelta(seconds=1)
    decision = decide_start_claim(state, new_attempt(2), now=later, link_ttl=LINK)
    assert [type(e) for e in decision.events] == [ClaimAttemptSuperseded, ClaimAttemptStarted]


def test_claim_on_a_claimed_registration_is_refused_before_expiry() -> None:
    """R8/O4: claimed ignores the TTL and E5 answers 409, never revoking anything."""
    state = given_(
        created(),
        started(1),
        issued(1),
        RegistrationClaimed(attempt_id="cla_1", user_id="usr_1", credential_id="cred_1"),
    )
    with pytest.raises(ProtocolError) as caught:
        decide_start_claim(state, new_attempt(), now=T0 + timedelta(days=3), link_ttl=LINK)
    assert caught.value.code == "claimed_or_in_flight"
    assert caught.value.status == 409


def test_claim_after_ttl_is_expired() -> None:
    """An unclaimed registration past its TTL answers 410 claim_expired."""
    with pytest.raises(ProtocolError) as caught:
        decide_start_claim(
            given_(created()), new_attempt(), now=T0 + timedelta(days=1), link_ttl=LINK
        )
    assert (caught.value.code, caught.value.status) == ("claim_expired", 410)


def test_verified_email_claim_only_for_same_email_after_window() -> None:
    """O6: E5 on an email registration is 409 unless the same email's window is over."""
    state = given_(created("verified_email"), started(1))
    with pytest.raises(ProtocolError) as inside:
        decide_start_claim(state, new_attempt(2), now=T0, link_ttl=LINK)
    assert inside.value.code == "claimed_or_in_flight"
    with pytest.raises(ProtocolError):
        decide_start_claim(state, new_attempt(2, "bob"), now=T0 + 2 * LINK, link_ttl=LINK)
    resend = decide_start_claim(state, new_attempt(2), now=T0 + 2 * LINK, link_ttl=LINK)
    assert isinstance(resend.events[-1], ClaimAttemptStarted)


def test_code_mint_needs_the_current_link_inside_its_window() -> None:
    """E7: old link 410 claim_superseded, late link 410 claim_expired, mint limit 429."""
    state = given_(created(), started(1))
    ok = decide_issue_otp(state, token_hash="t1", otp_hash="h", now=T0, otp_ttl=OTP, limits=LIMITS)
    assert ok.events == (OtpIssued(attempt_id="cla_1", otp_hash="h", expires_at=T0 + OTP),)
    cases = [("t0", T0, "claim_superseded"), ("t1", T0 + LINK, "claim_expired")]
    for token, at, code in cases:
        with pytest.raises(ProtocolError) as caught:
            decide_issue_otp(
                state, token_hash=token, otp_hash="h", now=at, otp_ttl=OTP, limits=LIMITS
            )
        assert caught.value.code == code
    many = given_(created(), started(1), *[issued(1)] * LIMITS.max_mints)
    with pytest.raises(ProtocolError) as limited:
        decide_issue_otp(many, token_hash="t1", otp_hash="h", now=T0, otp_ttl=OTP, limits=LIMITS)
    assert (limited.value.code, limited.value.status) == ("rate_limited", 429)


def test_the_v1_door_refuses_a_registration_of_the_v06_door() -> None:
    """Design section 3.4: E5 and E8 answer invalid_claim_token for a registration made at
    /agent/identity (naming that door), even with the right code, and E7 mints nothing for
    its link; nothing is written. The same registration as v1 passes each step."""
    for kind in ("anonymous", "service_auth"):
        v06 = msgspec.structs.replace(created(kind), dialect="v06", credential_id=None)
        user_code = msgspec.structs.replace(started(1), ceremony="user_code")
        state = given_(v06, user_code, issued(1))
        with pytest.raises(ProtocolError) as e5:
            decide_start_claim(state, new_attempt(2, "bob"), now=T0, link_ttl=LINK)
        assert (e5.value.code, e5.value.status) == ("invalid_claim_token", 401)
        assert "/agent/identity" in e5.value.message
        with pytest.raises(ProtocolError) as e7:
            decide_issue_otp(
                state, token_hash="t1", otp_hash="h9", now=T0, otp_ttl=OTP, limits=LIMITS
            )
        assert e7.value.code == "claim_superseded"
        assert "/agent/identity" in e7.value.message
        e8 = complete(state, right=True)
        assert e8.events == ()
        assert e8.error is not None
        assert (e8.error.code, e8.claimed) == ("invalid_claim_token", None)
        assert "/agent/identity" in e8.error.message
    v1 = given_(created(), started(1), issued(1))
    assert decide_start_claim(v1, new_attempt(2, "bob"), now=T0, link_ttl=LINK).events
    assert decide_issue_otp(
        v1, token_hash="t1", otp_hash="h9", now=T0, otp_ttl=OTP, limits=LIMITS
    ).events
    assert complete(v1, right=True).claimed is not None


def test_right_code_claims_once() -> None:
    """R6 then O17: the right code claims; any later try is previously_claimed."""
    state = given_(created(), started(1), issued(1))
    decision = complete(state, right=True)
    assert decision.error is None
    assert decision.events == (
        RegistrationClaimed(attempt_id="cla_1", user_id="usr_1", credential_id="cred_1"),
    )
    again = complete(apply(state, decision), right=True)
    assert again.error is not None
    assert again.error.code == "previously_claimed"
    assert (again.events, again.refused) == ((), "claimed")  # changes nothing: no event


def test_five_misses_void_the_code_then_the_right_code_fails() -> None:
    """§6.4: the fifth wrong code voids it; the right one then gets 410 otp_expired."""
    state = given_(created(), started(1), issued(1))
    for n in range(LIMITS.max_code_misses):
        decision = complete(state, right=False)
        assert decision.error is not None
        assert decision.error.code == "otp_invalid"
        failed = decision.events[0]
        assert isinstance(failed, OtpFailed)
        assert failed.code_voided == (n == LIMITS.max_code_misses - 1)
        state = apply(state, decision)
    refused = complete(state, right=True)
    assert refused.error is not None
    assert (refused.error.code, refused.error.message) == (
        "otp_expired",
        "too many attempts; mint a new code",
    )
    fresh = apply(state, Decision((issued(1),)))
    assert complete(fresh, right=True).error is None


def test_twenty_misses_lock_the_attempt_and_expire_the_registration() -> None:
    """§6.4: 20 misses per registration lock the attempt and expire the registration."""
    state = given_(created(), started(1))
    for _ in range(LIMITS.max_registration_misses):
        if state.attempt is not None and (
            state.attempt.otp_voided or state.attempt.otp_hash is None
        ):
            state = apply(state, Decision((issued(1),)))
        decision = complete(state, right=False)
        state = apply(state, decision)
    assert isinstance(decision.events[-1], RegistrationExpired)
    assert isinstance(decision.events[-2], ClaimAttemptLocked)
    assert state.status == "expired"
    assert state.attempt is not None
    assert state.attempt.status == "locked"
    late = complete(state, right=True)
    assert late.error is not None
    assert late.error.code == "claim_expired"


def test_code_past_its_lifetime_is_expired_even_inside_the_registration() -> None:
    """A code older than its 600 s answers 410 otp_expired."""
    state = given_(created(), started(1), issued(1))
    decision = complete(state, right=True, at=T0 + OTP)
    assert decision.error is not None
    assert decision.error.code == "otp_expired"


def test_no_code_yet() -> None:
    """E8 before any E7 answers 400 otp_not_generated and writes nothing (issue 12.1)."""
    decision = complete(given_(created(), started(1)), right=True)
    assert decision.error is not None
    assert (decision.error.code, decision.error.status) == ("otp_not_generated", 400)
    assert (decision.events, decision.refused) == ((), "not_generated")


def test_refusals_that_change_nothing_write_nothing() -> None:
    """Issue 12.1: a claimed, expired, code-less, voided or stale code try is answered with
    its error and no event; only a miss against a live code is an event."""
    claimed = given_(created(), started(1), issued(1))
    claimed = apply(claimed, complete(claimed, right=True))
    expired = given_(created(), started(1), issued(1), RegistrationExpired(reason="ttl"))
    voided = given_(created(), started(1), issued(1))
    for _ in range(LIMITS.max_code_misses):
        voided = apply(voided, complete(voided, right=False))
    cases = [
        (claimed, T0, "previously_claimed"),
        (expired, T0, "claim_expired"),
        (given_(created(), started(1)), T0, "otp_not_generated"),
        (voided, T0, "otp_expired"),
        (given_(created(), started(1), issued(1)), T0 + OTP, "otp_expired"),
    ]
    for state, at, code in cases:
        for right in (True, False):
            decision = complete(state, right=right, at=at)
            assert decision.error is not None
            assert (decision.error.code, decision.events) == (code, ())
    live = given_(created(), started(1), issued(1))
    miss = complete(live, right=False)
    assert miss.events == (OtpFailed(attempt_id="cla_1", reason="mismatch", code_voided=False),)


def test_a_registration_stream_stops_growing_before_its_limit() -> None:
    """Issue 12.1: E5 and E7 refuse (429 rate_limited) once the stream is at GROWTH_LIMIT;
    what E8 may still add (every miss up to the lock) fits under STREAM_LIMIT."""
    state = replace(given_(created(), started(1), issued(1)), version=GROWTH_LIMIT)
    with pytest.raises(ProtocolError) as e5:
        decide_start_claim(state, new_attempt(2, "bea"), now=T0, link_ttl=LINK)
    assert (e5.value.code, e5.value.status) == ("rate_limited", 429)
    assert state.attempt is not None
    with pytest.raises(ProtocolError) as e7:
        decide_issue_otp(
            state,
            token_hash=state.attempt.token_hash,
            otp_hash="h",
            now=T0,
            otp_ttl=OTP,
            limits=LIMITS,
        )
    assert e7.value.code == "rate_limited"
    below = replace(state, version=GROWTH_LIMIT - 1)
    assert decide_issue_otp(
        below,
        token_hash=state.attempt.token_hash,
        otp_hash="h",
        now=T0,
        otp_ttl=OTP,
        limits=LIMITS,
    ).events
    worst = LIMITS.max_registration_misses + 2 + 1 + 1 + 1  # misses, lock + expiry, claim...
    assert GROWTH_LIMIT + worst <= STREAM_LIMIT


def test_expiry_voids_the_live_attempt() -> None:
    """R7: expiry voids the attempt and its code."""
    state = given_(created(), started(1), issued(1), RegistrationExpired(reason="ttl"))
    assert state.status == "expired"
    assert state.attempt is not None
    assert (state.attempt.status, state.attempt.otp_hash) == ("void", None)


def test_erasing_an_older_attempt_leaves_the_current_one_and_the_current_one_is_void() -> None:
    """Issue 12.4: erasing a replaced attempt's data changes nothing the ceremony uses; an
    erasure naming the current attempt voids it, like the registration's own erasure."""
    state = given_(created(), started(1), issued(1))
    state = apply(state, decide_start_claim(state, new_attempt(2, "bob"), now=T0, link_ttl=LINK))
    older = evolve(state, ClaimAttemptsErased(attempt_ids=("cla_1",)))
    assert (older.attempt, older.version) == (state.attempt, state.version + 1)
    current = evolve(older, ClaimAttemptsErased(attempt_ids=("cla_2",)))
    assert current.attempt is not None
    assert (current.attempt.attempt_id, current.attempt.status) == ("cla_2", "void")


# -- property: no sequence of commands claims without the right code --------------------------

_commands = st.lists(
    st.sampled_from(["claim_same", "claim_other", "mint", "wrong", "right", "wait"]),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(commands=_commands)
def test_only_the_right_fresh_code_claims_and_replay_equals_live(commands: list[str]) -> None:
    """For any command sequence: a claim happens only on a right code for a live, minted,
    fresh, unvoided attempt of an unexpired registration, and folding the recorded events
    from scratch gives exactly the state built live."""
    log: list[RegistrationEvent] = [created()]
    state = given_(*log)
    now, n = T0, 0
    for command in commands:
        decision: Decision | None = None
        try:
            if command in ("claim_same", "claim_other"):
                n += 1
                email = "ana" if command == "claim_same" else f"e{n}"
                decision = decide_start_claim(state, new_attempt(n, email), now=now, link_ttl=LINK)
            elif command == "mint" and state.attempt is not None:
                decision = decide_issue_otp(
                    state,
                    token_hash=state.attempt.token_hash,
                    otp_hash="h",
                    now=now,
                    otp_ttl=OTP,
                    limits=LIMITS,
                )
            elif command in ("wrong", "right"):
                before = state
                decision = complete(state, right=command == "right", at=now)
                claimed = any(isinstance(e, RegistrationClaimed) for e in decision.events)
                attempt = before.attempt
                may_claim = (
                    command == "right"
                    and before.status not in ("claimed", "expired")
                    and now < before.expires_at
                    and attempt is not None
                    and attempt.live
                    and attempt.otp_hash is not None
                    and not attempt.otp_voided
                    and attempt.otp_expires_at is not None
                    and now < attempt.otp_expires_at
                )
                assert claimed == may_claim
                if decision.error is not None and decision.error.code != "otp_invalid":
                    assert decision.events == ()  # a refusal that changes nothing
            elif command == "wait":
                now += timedelta(minutes=7)
        except ProtocolError:
            decision = None
        if decision is not None:
            for event in decision.events:
                log.append(event)  # type: ignore[arg-type]
                state = evolve(state, event)  # type: ignore[arg-type]
    assert fold(log) == state
    assert state.version == len(log)
