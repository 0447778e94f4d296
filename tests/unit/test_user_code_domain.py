"""The v0.6 claim ceremony's rules (service/domain/user_code.py; design section 3.2-3.4),
given a registration's events, when a decision, then events or a refusal. Every decision
taken is applied through `evolve`, so the next one sees the state the log would fold."""

from __future__ import annotations

import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.delegation import DelegationCreated
from events.registration import (
    ClaimAttemptDenied,
    ClaimAttemptLocked,
    ClaimAttemptStarted,
    ClaimAttemptSuperseded,
    ClaimDelivered,
    OtpFailed,
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
from service.domain.claim import Decision, OtpLimits
from service.domain.errors import ProtocolError
from service.domain.registration import GROWTH_LIMIT, Registration, evolve, fold
from service.domain.user_code import (
    Claimant,
    Deliver,
    DeliveryTerms,
    NewCode,
    Poll,
    Refused,
    decide_deny,
    decide_enter_code,
    decide_open_attempt,
    decide_poll,
    decide_view,
)

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
TTL = timedelta(days=1)
LINK = CODE = timedelta(seconds=600)
LIMITS = OtpLimits()  # §6.4: 5 misses void a code, 20 lock the registration
TERMS = DeliveryTerms()  # O-E: 3 deliveries within 600 s
POST = ("api.read", "api.write")
ISSUER = "http://127.0.0.1:8000"
STEP_UP = StepUp(
    delegation_id="dlg_1", issuer="https://idp.example", subject_sealed="pii1.usr_ana.sub",
    user_id="usr_ana", matched_by="email", jti="jti-1", client_id="https://agent.example",
)  # fmt: skip


def created(kind: RegistrationKind = "anonymous", dialect: str = "v06") -> RegistrationCreated:
    return RegistrationCreated(
        registration_id="reg_1",
        kind=kind,
        requested_credential_type="access_token" if dialect == "v06" else "api_key",
        claim_token_hash="c" * 64,
        expires_at=T0 + TTL,
        pre_claim_scopes=("api.read",) if kind == "anonymous" else (),
        post_claim_scopes=POST,
        credential_id="cred_key" if dialect == "v1" and kind == "anonymous" else None,
        dialect=dialect,  # type: ignore[arg-type]
        step_up=STEP_UP if kind == "id_jag" else None,
    )


def given_(*events: RegistrationEvent) -> Registration:
    state = fold(list(events))
    assert state is not None
    return state


def apply(state: Registration, decision: Decision) -> Registration:
    """The registration's events of `decision`, folded on `state` as the log would."""
    for event in decision.events:
        state = evolve(state, event)  # type: ignore[arg-type]
    return state


def new_code(n: int, hint: str = "ana") -> NewCode:
    return NewCode(f"cla_{n}", f"cvt-{n}", f"idx-{hint}", f"pii1.cla_{n}.{hint}", f"hmac-{n}")


def opened(
    state: Registration, n: int, hint: str = "ana", at: datetime = T0, code_ttl: timedelta = CODE
) -> Registration:
    """V2 (or the service_auth / step-up start) decided and applied."""
    decision = decide_open_attempt(
        state, new_code(n, hint), now=at, link_ttl=LINK, code_ttl=code_ttl
    )
    return apply(state, decision)


def pending(kind: RegistrationKind = "service_auth", hint: str = "ana") -> Registration:
    """A v0.6 registration whose first attempt (cla_1, code hmac-1) waits for the person."""
    return opened(given_(created(kind)), 1, hint)


def enter(
    state: Registration,
    *,
    link: str = "cvt-1",
    session: str = "idx-ana",
    code: str = "hmac-1",
    at: datetime = T0,
    user: str = "usr_ana",
    active: tuple[str, ...] = (),
) -> Decision:
    """V5: the person signed in as `session` types `code` on `link`'s page. The code check
    compares what was typed with the stored HMAC, as the command's callable does."""
    return decide_enter_code(
        state,
        link_hash=link,
        signed_in_index=session,
        code_matches=lambda _attempt, stored: hmac.compare_digest(stored, code),
        now=at,
        limits=LIMITS,
        claimant=Claimant(user, "email_link", ISSUER),
        terms=TERMS,
        active=active,
    )


def refusal(call: object, *args: object, **kwargs: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def poll(state: Registration | None, at: datetime = T0, *, too_fast: bool = False) -> Poll:
    return decide_poll(state, now=at, too_fast=too_fast)


def poll_code(state: Registration | None, at: datetime = T0, *, too_fast: bool = False) -> str:
    answer = poll(state, at, too_fast=too_fast)
    assert isinstance(answer, Refused), answer
    return answer.code


def claimed(state: Registration, at: datetime = T0) -> Registration:
    """The hinted person types the current attempt's code on its link: claimed."""
    attempt = state.attempt
    assert attempt is not None
    assert attempt.otp_hash is not None
    decision = enter(state, link=attempt.token_hash, code=attempt.otp_hash, at=at)
    assert decision.claimed is not None
    return apply(state, decision)


# -- the design's rows (section 3.2) --------------------------------------------------------


def test_anonymous_waits_without_an_attempt() -> None:
    """R1': an anonymous v0.6 registration is unclaimed with no key and no attempt: polls are
    pending, and no link of it opens a page."""
    state = given_(created())
    assert (state.status, state.credential_id, state.attempt) == ("unclaimed", None, None)
    assert poll_code(state) == "authorization_pending"
    assert refusal(enter, state, link="cvt-1").code == "not_found"


def test_service_auth_opens_its_attempt_with_the_one_code() -> None:
    """R2': the state just created gets `claim.attempt_started` (user_code, the hint) and
    `claim.otp_issued`; folded, the attempt is challenged with its one code."""
    state = given_(created("service_auth"))
    decision = decide_open_attempt(state, new_code(1), now=T0, link_ttl=LINK, code_ttl=CODE)
    assert decision.events == (
        ClaimAttemptStarted(
            attempt_id="cla_1", attempt_token_hash="cvt-1", email_sealed="pii1.cla_1.ana",
            email_index="idx-ana", link_expires_at=T0 + LINK, ceremony="user_code",
        ),
        OtpIssued(attempt_id="cla_1", otp_hash="hmac-1", expires_at=T0 + CODE),
    )  # fmt: skip
    after = apply(state, decision)
    assert after.attempt is not None
    assert (after.status, after.attempt.status, after.attempt.mints) == (
        "pending_claim", "challenged", 1,
    )  # fmt: skip
    assert poll_code(after) == "authorization_pending"


def test_a_new_attempt_supersedes_the_old_link_and_code() -> None:
    """R3' (case 20): V2 supersedes the live attempt; the old link is unknown (404) and the
    old code does not claim through the new link (a counted miss)."""
    state = pending()
    decision = decide_open_attempt(state, new_code(2), now=T0, link_ttl=LINK, code_ttl=CODE)
    assert decision.events[0] == ClaimAttemptSuperseded(attempt_id="cla_1", superseded_by="cla_2")
    assert [type(e) for e in decision.events[1:]] == [ClaimAttemptStarted, OtpIssued]
    state = apply(state, decision)
    assert refusal(enter, state, link="cvt-1", code="hmac-1").code == "not_found"
    old_code = enter(state, link="cvt-2", code="hmac-1")
    assert old_code.claimed is None
    assert old_code.error is not None
    assert old_code.error.code == "user_code_invalid"
    assert claimed(state).status == "claimed"


def test_anonymous_gets_its_first_attempt_at_v2() -> None:
    """R3' from unclaimed: no attempt to supersede; the registration now waits for a claim."""
    state = given_(created())
    decision = decide_open_attempt(state, new_code(1), now=T0, link_ttl=LINK, code_ttl=CODE)
    assert [type(e) for e in decision.events] == [ClaimAttemptStarted, OtpIssued]
    assert apply(state, decision).status == "pending_claim"


def test_v2_may_change_the_hint_until_claimed() -> None:
    """O-I: a new attempt may name another address; the person must then match the new one."""
    state = opened(pending(hint="ana"), 2, hint="bob")
    assert refusal(enter, state, link="cvt-2", code="hmac-2").code == "wrong_account"
    assert enter(state, link="cvt-2", session="idx-bob", code="hmac-2").claimed is not None


def test_v2_refusals_write_nothing() -> None:
    """V2 refuses a v1 registration (401 naming /agent/auth, design section 3.4), a claimed
    one (409), an ended one (410: TTL, lock, revocation, erasure), and past GROWTH_LIMIT."""
    new = new_code(9)
    v1 = given_(created(dialect="v1"))
    locked, _ = missed_until_locked()
    assert locked.status == "expired"
    cases = [
        (v1, T0, "invalid_claim_token", 401),
        (claimed(pending()), T0, "claimed_or_in_flight", 409),
        (pending(), T0 + TTL, "claim_expired", 410),
        (locked, T0, "claim_expired", 410),
        (
            apply(pending(), Decision((RegistrationRevoked(reason="operator"),))),
            T0,
            "claim_expired",
            410,
        ),
        (apply(pending(), Decision((RegistrationErased(),))), T0, "claim_expired", 410),
        (replace(pending(), version=GROWTH_LIMIT), T0, "rate_limited", 429),
    ]
    for state, at, code, status in cases:
        error = refusal(decide_open_attempt, state, new, now=at, link_ttl=LINK, code_ttl=CODE)
        assert (error.code, error.status) == (code, status)
    assert (
        "/agent/auth"
        in refusal(decide_open_attempt, v1, new, now=T0, link_ttl=LINK, code_ttl=CODE).message
    )


def test_a_step_ups_new_attempt_keeps_the_matched_address() -> None:
    """O-I: for kind id_jag the hint stays the matched user's, whatever address V2 names."""
    state = pending("id_jag", hint="ana")
    decision = decide_open_attempt(
        state, new_code(2, "mallory"), now=T0, link_ttl=LINK, code_ttl=CODE
    )
    started = decision.events[1]
    assert isinstance(started, ClaimAttemptStarted)
    assert (started.email_index, started.email_sealed) == ("idx-ana", "pii1.cla_1.ana")
    state = apply(state, decision)
    assert refusal(enter, state, link="cvt-2", session="idx-mallory", code="hmac-2").code == (
        "wrong_account"
    )


def test_deny_ends_the_attempt_and_the_poll_says_so() -> None:
    """R5': the hinted person's Deny is `claim.attempt_denied`; the agent's poll answers
    access_denied, the link is unknown after it, and a new V2 starts over."""
    state = pending()
    decision = decide_deny(state, link_hash="cvt-1", signed_in_index="idx-ana", now=T0)
    assert decision.events == (ClaimAttemptDenied(attempt_id="cla_1"),)
    state = apply(state, decision)
    assert poll_code(state) == "access_denied"
    assert refusal(enter, state).code == "not_found"
    assert refusal(
        decide_deny, state, link_hash="cvt-1", signed_in_index="idx-ana", now=T0
    ).code == ("not_found")
    again = opened(state, 2)
    assert poll_code(again) == "authorization_pending"


def test_deny_refusals_write_nothing() -> None:
    """Deny: V5's first three checks (unknown link 404, another address 403, claimed 409);
    an attempt already over has nothing to decline (410)."""
    state = pending()
    cases = [
        (state, "cvt-0", "idx-ana", T0, "not_found"),
        (state, "cvt-1", "idx-bob", T0, "wrong_account"),
        (claimed(pending()), "cvt-1", "idx-ana", T0, "previously_claimed"),
        (state, "cvt-1", "idx-ana", T0 + TTL, "claim_expired"),
        (given_(created(dialect="v1"), _v1_started()), "cvt-1", "idx-ana", T0, "not_found"),
    ]
    for regn, link, session, at, code in cases:
        error = refusal(decide_deny, regn, link_hash=link, signed_in_index=session, now=at)
        assert error.code == code


def _v1_started() -> ClaimAttemptStarted:
    return ClaimAttemptStarted(
        attempt_id="cla_1", attempt_token_hash="cvt-1", email_sealed="pii1.cla_1.ana",
        email_index="idx-ana", link_expires_at=T0 + LINK,
    )  # fmt: skip


def test_the_right_code_claims_and_ends_the_pre_claim_tokens() -> None:
    """R6' (O-E, O-F, case 17): `registration.claimed` without a credential, with how the
    person signed in and the delivery allowance as decided; the registration's active
    credentials are to be revoked; no delegation for a non-step-up."""
    state = opened(given_(created()), 1)
    at = T0 + timedelta(minutes=2)
    decision = enter(state, at=at, active=("cred_at1", "cred_at2"))
    assert (decision.events, decision.error) == (
        (
            RegistrationClaimed(
                attempt_id="cla_1", user_id="usr_ana", credential_id=None,
                auth_method="email_link", max_deliveries=3, deliver_until=at + TERMS.window,
            ),
        ),
        None,
    )  # fmt: skip
    assert (decision.revoke, decision.delegation, decision.credential) == (
        ("cred_at1", "cred_at2"), (), (),
    )  # fmt: skip
    state = apply(state, decision)
    assert (state.status, state.stage, state.user_id, state.credential_id) == (
        "claimed", 1, "usr_ana", None,
    )  # fmt: skip


def test_a_step_ups_claim_links_the_subject() -> None:
    """R6' for kind id_jag: `delegation.created` matched_by step_up, from the StepUp facts,
    with our issuer as its audience (O-D)."""
    decision = enter(pending("id_jag"))
    assert decision.delegation == (
        DelegationCreated(
            delegation_id="dlg_1", issuer="https://idp.example", audience=ISSUER,
            subject_sealed="pii1.usr_ana.sub", user_id="usr_ana", matched_by="step_up",
        ),
    )  # fmt: skip
    assert decision.claimed is not None


def test_a_claim_near_the_end_may_deliver_only_until_the_end() -> None:
    """O-E: the allowance recorded is min(claim + window, the registration's expiry)."""
    at = T0 + TTL - timedelta(minutes=3)
    state = opened(given_(created()), 1, at=at)
    decision = enter(state, at=at)
    assert decision.claimed is not None
    assert decision.claimed.deliver_until == T0 + TTL


# -- V5's order ---------------------------------------------------------------------------


def test_v5_1_the_link_must_be_the_current_user_code_attempt() -> None:
    """Unknown, replaced and v1 links are 404, before anything else is looked at."""
    state = pending()
    assert refusal(enter, state, link="cvt-x", session="idx-bob").code == "not_found"
    v1 = given_(created(dialect="v1"), _v1_started())
    error = refusal(enter, v1, session="idx-bob")
    assert (error.code, error.status) == ("not_found", 404)
    assert "/agent/auth" in error.message


def test_v5_2_another_address_is_403_and_writes_nothing() -> None:
    """O-J: signed in as another address: 403 with the right code, and before claimed,
    expired or voided are told (a stranger learns nothing about the claim)."""
    for state, at in ((pending(), T0), (claimed(pending()), T0), (pending(), T0 + TTL)):
        error = refusal(enter, state, session="idx-bob", at=at)
        assert (error.code, error.status) == ("wrong_account", 403)


def test_v5_2_a_step_up_is_claimed_only_by_the_matched_user() -> None:
    """Design: for id_jag the claiming user must be the step-up's, checked anyway."""
    error = refusal(enter, pending("id_jag"), user="usr_other")
    assert error.code == "wrong_account"
    assert enter(pending("id_jag")).claimed is not None


def test_v5_3_claimed_is_409() -> None:
    """A claimed registration: 409 previously_claimed, even with the right code, even past
    the registration's TTL (claimed ignores it)."""
    state = claimed(pending())
    for at in (T0, T0 + 2 * TTL):
        error = refusal(enter, state, at=at)
        assert (error.code, error.status) == ("previously_claimed", 409)


def test_v5_4_ended_or_the_link_window_over_is_410() -> None:
    """claim_expired: past the TTL, revoked, or past the link's window."""
    revoked = apply(pending(), Decision((RegistrationRevoked(reason="operator"),)))
    for state, at in ((pending(), T0 + TTL), (revoked, T0), (pending(), T0 + LINK)):
        error = refusal(enter, state, at=at)
        assert (error.code, error.status) == ("claim_expired", 410)


def test_v5_5_a_voided_or_stale_code_is_user_code_expired() -> None:
    """410 user_code_expired: five misses voided it, or its own end passed inside the link's
    window; nothing is written."""
    voided = pending()
    for _ in range(LIMITS.max_code_misses):
        voided = apply(voided, enter(voided, code="wrong"))
    short = opened(given_(created("service_auth")), 1, code_ttl=timedelta(seconds=60))
    for state, at in ((voided, T0), (short, T0 + timedelta(seconds=60))):
        error = refusal(enter, state, at=at)
        assert (error.code, error.status) == ("user_code_expired", 410)


def test_v5_6_a_wrong_code_counts() -> None:
    """401 user_code_invalid, recorded as `claim.otp_failed` mismatch."""
    decision = enter(pending(), code="wrong")
    assert decision.events == (OtpFailed(attempt_id="cla_1", reason="mismatch"),)
    assert decision.error is not None
    assert (decision.error.code, decision.error.status) == ("user_code_invalid", 401)
    assert apply(pending(), decision).attempt.otp_misses == 1  # type: ignore[union-attr]


def test_five_misses_void_the_code() -> None:
    """R6'f, O-H with §6.4: the fifth miss voids the code; the right code is then refused,
    the poll says expired_token, and a new attempt's code claims."""
    state = pending()
    for n in range(LIMITS.max_code_misses):
        decision = enter(state, code="wrong")
        last = n == LIMITS.max_code_misses - 1
        assert decision.events == (
            OtpFailed(attempt_id="cla_1", reason="mismatch", code_voided=last),
        )
        state = apply(state, decision)
    assert refusal(enter, state).code == "user_code_expired"
    assert poll_code(state) == "expired_token"
    state = opened(state, 2)
    assert enter(state, link="cvt-2", code="hmac-2").claimed is not None


def missed_until_locked() -> tuple[Registration, Decision]:
    """Four attempts, each code missed five times: the state after, and the last decision.
    No miss before the twentieth ends the registration."""
    state, misses = pending(), 0
    for n in range(1, 5):
        if n > 1:
            state = opened(state, n)
        for _ in range(LIMITS.max_code_misses):
            decision = enter(state, link=f"cvt-{n}", code="wrong")
            misses += 1
            if misses < LIMITS.max_registration_misses:
                assert not any(isinstance(e, RegistrationExpired) for e in decision.events)
            state = apply(state, decision)
    return state, decision


def test_twenty_misses_lock_the_registration() -> None:
    """R6'f, §6.4: the registration's twentieth miss (over four attempts) locks the attempt
    and expires the registration; then V2, V5 and V7 all say it ended."""
    state, decision = missed_until_locked()
    assert decision.events == (
        OtpFailed(attempt_id="cla_4", reason="mismatch", code_voided=True),
        ClaimAttemptLocked(attempt_id="cla_4"),
        RegistrationExpired(reason="locked"),
    )
    assert state.attempt is not None
    assert (state.status, state.attempt.status, state.misses) == ("expired", "locked", 20)
    assert refusal(enter, state, link="cvt-4", code="hmac-4").code == "claim_expired"
    assert poll_code(state) == "expired_token"
    error = refusal(decide_open_attempt, state, new_code(5), now=T0, link_ttl=LINK, code_ttl=CODE)
    assert error.code == "claim_expired"


def test_the_lock_ends_the_pre_claim_tokens() -> None:
    """The twentieth miss ends the registration's active credentials with it (as v1's lock
    ends the pre-claim key); a miss before it ends none."""
    state, misses = pending(), 0
    for n in range(1, 5):
        if n > 1:
            state = opened(state, n)
        for _ in range(LIMITS.max_code_misses):
            misses += 1
            decision = enter(state, link=f"cvt-{n}", code="wrong", active=("cred_a",))
            expected = ("cred_a",) if misses == LIMITS.max_registration_misses else ()
            assert decision.revoke == expected
            state = apply(state, decision)
    assert state.status == "expired"


def test_view_checks_as_v5_before_the_code() -> None:
    """V4: the live attempt for the hinted person; else 404 (unknown, replaced or denied
    link), 403 (another address), 409 (claimed), 410 (ended, or the link's window over)."""
    state = pending()
    attempt = decide_view(state, link_hash="cvt-1", signed_in_index="idx-ana", now=T0)
    assert attempt.attempt_id == "cla_1"
    denied = apply(state, decide_deny(state, link_hash="cvt-1", signed_in_index="idx-ana", now=T0))
    cases = [
        (state, "cvt-0", "idx-ana", T0, "not_found"),
        (opened(state, 2), "cvt-1", "idx-ana", T0, "not_found"),
        (denied, "cvt-1", "idx-ana", T0, "not_found"),
        (state, "cvt-1", "idx-bob", T0, "wrong_account"),
        (claimed(pending()), "cvt-1", "idx-ana", T0, "previously_claimed"),
        (state, "cvt-1", "idx-ana", T0 + LINK, "claim_expired"),
        (state, "cvt-1", "idx-ana", T0 + TTL, "claim_expired"),
    ]
    for regn, link, session, at, code in cases:
        error = refusal(decide_view, regn, link_hash=link, signed_in_index=session, now=at)
        assert error.code == code


def test_ttl_and_revocation_end_the_ceremony() -> None:
    """R7 and the revocation row: past the TTL or revoked, V5 410, V7 expired_token; a
    claimed registration that is revoked stops delivering (case 29)."""
    revoked_claim = apply(claimed(pending()), Decision((RegistrationRevoked(reason="logout"),)))
    assert revoked_claim.status == "revoked"
    assert poll_code(revoked_claim) == "expired_token"
    expired = apply(pending(), Decision((RegistrationExpired(reason="ttl"),)))
    for state, at in ((pending(), T0 + TTL), (expired, T0)):
        assert refusal(enter, state, at=at).code == "claim_expired"
        assert poll_code(state, at) == "expired_token"


# -- the delivery row (O-E) ---------------------------------------------------------------


def delivered(state: Registration, at: datetime = T0) -> Registration:
    answer = poll(state, at)
    assert isinstance(answer, Deliver), answer
    return evolve(state, answer.delivered(f"cred_{state.deliveries + 1}"))


def test_a_claimed_token_delivers_three_times_then_invalid_grant() -> None:
    """O-E, case 19: three deliveries of the post-claim scopes to the claiming user, each
    counted by `claim.delivered`; the fourth poll is invalid_grant."""
    state = claimed(pending())
    answer = poll(state)
    assert answer == Deliver("reg_1", "usr_ana", POST)
    assert isinstance(answer, Deliver)
    assert answer.delivered("cred_9") == ClaimDelivered(credential_id="cred_9")
    for n in range(TERMS.max_deliveries):
        state = delivered(state, T0 + timedelta(seconds=n))
    assert state.deliveries == 3
    assert poll_code(state, T0 + timedelta(seconds=5)) == "invalid_grant"


def test_no_delivery_past_deliver_until() -> None:
    """O-E: the window closes at deliver_until, deliveries left or not."""
    state = delivered(claimed(pending()))
    assert state.deliver_until == T0 + TERMS.window
    assert isinstance(poll(state, T0 + TERMS.window - timedelta(seconds=1)), Deliver)
    assert poll_code(state, T0 + TERMS.window) == "invalid_grant"


def test_no_delivery_past_the_registrations_outer_expiry() -> None:
    """O-E and tuist's review: not past the registration's end, whether the recorded
    allowance already stops there or (recorded under other terms) reaches beyond it."""
    late = T0 + TTL - timedelta(minutes=1)
    state = claimed(opened(given_(created()), 1, at=late), at=late)
    assert state.deliver_until == T0 + TTL
    assert isinstance(poll(state, T0 + TTL - timedelta(seconds=1)), Deliver)
    assert poll_code(state, T0 + TTL) == "invalid_grant"
    beyond = replace(state, deliver_until=T0 + TTL + timedelta(hours=1))
    assert poll_code(beyond, T0 + TTL) == "invalid_grant"
    assert isinstance(poll(beyond, T0 + TTL - timedelta(seconds=1)), Deliver)


# -- V7's order, one test per step ----------------------------------------------------------


def test_poll_1_an_unknown_token_is_expired_token() -> None:
    """Step 1 (contract 3.3): no registration for the claim token."""
    assert poll_code(None) == "expired_token"


def test_poll_2_a_v1_registration_is_invalid_grant() -> None:
    """Step 2 (design section 3.4): a v1 claim token, even expired, is invalid_grant, naming
    its door."""
    v1 = given_(created(dialect="v1"))
    assert poll_code(v1, T0 + TTL) == "invalid_grant"
    answer = poll(v1)
    assert isinstance(answer, Refused)
    assert "/agent/auth" in answer.error.message


def test_poll_3_ended_is_expired_token_before_anything_else() -> None:
    """Step 3: ended (TTL, revoked even once claimed, erased) is expired_token, also when
    polled too fast."""
    erased = apply(pending(), Decision((RegistrationErased(),)))
    revoked = apply(claimed(pending()), Decision((RegistrationRevoked(reason="operator"),)))
    for state, at in ((pending(), T0 + TTL), (revoked, T0), (erased, T0)):
        assert poll_code(state, at, too_fast=True) == "expired_token"


def test_poll_4_claimed_delivers_even_when_polled_fast() -> None:
    """Step 4 before step 5: a claimed registration's answer ignores the pacing, either way."""
    state = claimed(pending())
    assert isinstance(poll(state, too_fast=True), Deliver)
    assert poll_code(state, T0 + TERMS.window, too_fast=True) == "invalid_grant"


def test_poll_5_too_fast_is_slow_down() -> None:
    """Step 5 (O-G) before steps 6-9: no attempt, denied, or a dead code all slow down."""
    denied = apply(
        pending(), decide_deny(pending(), link_hash="cvt-1", signed_in_index="idx-ana", now=T0)
    )
    for state, at in (
        (given_(created()), T0),
        (denied, T0),
        (pending(), T0 + CODE),
        (pending(), T0),
    ):
        assert poll_code(state, at, too_fast=True) == "slow_down"


def test_poll_6_no_attempt_yet_is_pending() -> None:
    """Step 6: anonymous before V2."""
    assert poll_code(given_(created()), T0 + TTL - timedelta(seconds=1)) == "authorization_pending"


def test_poll_7_denied_is_access_denied() -> None:
    """Step 7 before step 8: a denied attempt has no code left, yet the answer is the Deny."""
    state = pending()
    state = apply(state, decide_deny(state, link_hash="cvt-1", signed_in_index="idx-ana", now=T0))
    assert poll_code(state, T0 + CODE) == "access_denied"


def test_poll_8_a_dead_code_is_expired_token() -> None:
    """Step 8 (case 20): the code past its end, or voided by misses."""
    voided = pending()
    for _ in range(LIMITS.max_code_misses):
        voided = apply(voided, enter(voided, code="wrong"))
    assert poll_code(pending(), T0 + CODE) == "expired_token"
    assert poll_code(voided) == "expired_token"


def test_poll_9_otherwise_pending() -> None:
    """Step 9 (case 11, case 15): a live code, also after a wrong one."""
    state = pending()
    assert poll_code(state, T0 + CODE - timedelta(seconds=1)) == "authorization_pending"
    state = apply(state, enter(state, code="wrong"))
    assert poll_code(state) == "authorization_pending"


# -- property --------------------------------------------------------------------------------

_KINDS = st.sampled_from(["anonymous", "service_auth", "id_jag"])
# Weighted by repetition: mostly code tries, so that misses pile up to the limits.
_STEP = st.sampled_from(
    [
        *("open", "open", "right", "right", "wrong", "wrong", "wrong", "old", "stale_link"),
        *("deny", "poll", "poll_fast", "wait", "wait_long", "revoke"),
    ]
)
_WHO = st.sampled_from(["ana", "ana", "ana", "ana", "bob", "eve"])  # eve is never a hint


@settings(max_examples=400, deadline=None)
@given(kind=_KINDS, steps=st.lists(st.tuples(_STEP, _WHO, st.integers(1, 6)), max_size=30))
def test_no_history_claims_without_the_right_code_under_the_hinted_session(
    kind: RegistrationKind, steps: list[tuple[str, str, int]]
) -> None:
    """Whatever the agent, the person and a stranger do, in any order: a claim is only ever
    decided by V5 with the current attempt's code typed by a session whose address index is
    the attempt's hint; at most one claim; deliveries within the allowance; and folding the
    recorded events from scratch gives the state built live."""
    log: list[RegistrationEvent] = [created(kind)]
    state = given_(*log)
    now, n = T0, 0
    for step, who in (s[:2] for s in steps for _ in range(s[2])):  # each step 1-6 times
        before = state
        decision: Decision | None = None
        typed, link = f"hmac-{n}", f"cvt-{n}"
        try:
            if step == "open":
                code = new_code(n + 1, "bob" if who == "bob" else "ana")
                decision = decide_open_attempt(state, code, now=now, link_ttl=LINK, code_ttl=CODE)
                n += 1
            elif step in ("right", "wrong", "old", "stale_link"):
                typed = {"wrong": "wrong", "old": f"hmac-{n - 1}"}.get(step, typed)
                link = f"cvt-{n - 1}" if step == "stale_link" else link
                decision = enter(state, link=link, session=f"idx-{who}", code=typed, at=now)
            elif step == "deny":
                decision = decide_deny(state, link_hash=link, signed_in_index=f"idx-{who}", now=now)
            elif step in ("poll", "poll_fast"):
                answer = poll(state, now, too_fast=step == "poll_fast")
                if isinstance(answer, Deliver):
                    assert state.deliveries < state.max_deliveries
                    assert state.deliver_until is not None
                    assert now < min(state.deliver_until, state.expires_at)
                    decision = Decision((answer.delivered(f"cred_{len(log)}"),))
            elif step in ("wait", "wait_long"):
                now += timedelta(seconds=700 if step == "wait_long" else 60)
            elif step == "revoke" and not state.ended(now) and who == "eve":
                decision = Decision((RegistrationRevoked(reason="operator"),))
        except ProtocolError:
            decision = None
        if decision is None:
            continue
        if decision.claimed is not None:
            attempt = before.attempt
            assert step in ("right", "stale_link", "old", "wrong")
            assert attempt is not None
            assert attempt.token_hash == link
            assert attempt.otp_hash == typed
            assert attempt.email_index == f"idx-{who}"
            assert before.status != "claimed"
        state = apply(state, decision)
        log += decision.events  # type: ignore[arg-type]
    assert sum(isinstance(e, RegistrationClaimed) for e in log) <= 1
    assert fold(log) == state
