"""The AuthKit profile's rules (service/domain/confirm.py, service/domain/refresh.py; design
section 12): given a registration's events, when the page's Authorize, the agent's complete or
a refresh, then the events or the refusal. Decisions are applied through `evolve`, so each
next step sees the state the log would fold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from events.registration import (
    ClaimAttemptLocked,
    ClaimAttemptStarted,
    OtpFailed,
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationExpired,
    RegistrationRevoked,
)
from service.domain.claim import Decision, OtpLimits
from service.domain.confirm import (
    decide_complete_confirmed,
    decide_confirm,
    decide_open_confirm,
)
from service.domain.errors import ProtocolError
from service.domain.refresh import Presented, Reuse, Rotate, decide_refresh
from service.domain.registration import Registration, evolve, fold
from service.domain.user_code import Claimant, NewCode

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
LINK = CODE = timedelta(seconds=600)
LIMITS = OtpLimits()
HINT = "idx_ana"
CLAIMANT = Claimant("usr_ana", "", "http://127.0.0.1:8000")
NEW = NewCode(attempt_id="cla_1", link_hash="l" * 64, hint_index=HINT, hint_sealed="sealed",
              code_hash="unused")  # fmt: skip


def registration(kind: str = "service_auth") -> Registration:
    created = RegistrationCreated(
        registration_id="reg_1", kind=kind,  # type: ignore[arg-type]
        requested_credential_type="access_token", claim_token_hash="c" * 64,
        expires_at=T0 + timedelta(days=1), pre_claim_scopes=(),
        post_claim_scopes=("api.read", "api.write"), dialect="v06",
    )  # fmt: skip
    state = fold([created])
    assert state is not None
    return state


def apply(state: Registration, decision: Decision) -> Registration:
    for event in decision.events:
        next_state = evolve(state, event)  # type: ignore[arg-type]
        assert next_state is not None
        state = next_state
    return state


def opened() -> Registration:
    state = registration()
    return apply(state, decide_open_confirm(state, NEW, now=T0, link_ttl=LINK))


def authorize(state: Registration, link_hash: str, index: str, at: datetime) -> Decision:
    return decide_confirm(
        state, link_hash=link_hash, signed_in_index=index, code_hash="h1",
        auth_method="email_link", now=at, code_ttl=CODE, limits=LIMITS,
    )  # fmt: skip


def confirmed(at: datetime = T0) -> Registration:
    state = opened()
    return apply(state, authorize(state, NEW.link_hash, HINT, at))


def complete(state: Registration, right: bool, at: datetime = T0) -> Decision:
    return decide_complete_confirmed(
        state, code_matches=lambda _aid, _stored: right, now=at, limits=LIMITS,
        claimant=CLAIMANT, refresh_id="cred_rt1", active=("cred_pre",),
    )  # fmt: skip


def refused(code: str, call: object, *args: object, **kwargs: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code == code


def test_open_confirm_has_no_code() -> None:
    """V1 service_auth / V2 in the profile: the attempt's ceremony is `confirm` and no code
    is minted (the agent gets none)."""
    state = registration()
    decision = decide_open_confirm(state, NEW, now=T0, link_ttl=LINK)
    [started] = decision.events
    assert isinstance(started, ClaimAttemptStarted)
    assert (started.ceremony, started.email_index) == ("confirm", HINT)


def test_confirm_mints_the_code_for_the_hint_only() -> None:
    """Authorize: another address is 403 with nothing decided; the hint's gets one
    `claim.otp_issued` recording how they signed in; an unknown link is 404; after the
    link's window 410."""
    state = opened()
    refused("wrong_account", authorize, state, NEW.link_hash, "idx_eve", T0)
    refused("not_found", authorize, state, "x" * 64, HINT, T0)
    refused("claim_expired", authorize, state, NEW.link_hash, HINT, T0 + LINK)
    decision = authorize(state, NEW.link_hash, HINT, T0)
    assert decision.events == (
        OtpIssued(attempt_id="cla_1", otp_hash="h1", expires_at=T0 + CODE,
                  confirmed_by="email_link"),
    )  # fmt: skip
    assert apply(state, decision).attempt.confirmed_by == "email_link"  # type: ignore[union-attr]


def test_complete_order_and_claim() -> None:
    """Complete: before the confirmation 409 `claim_not_confirmed`; a wrong code counts
    (`claim.otp_failed`, 401 `invalid_user_code`); past the code's end 410; the right one
    claims with the refresh token as its credential, the confirmer's method, no deliveries,
    and ends the active credentials; then 409 `already_claimed`."""
    refused("claim_not_confirmed", complete, opened(), True)
    state = confirmed()
    wrong = complete(state, False)
    assert [type(e) for e in wrong.events] == [OtpFailed]
    assert wrong.error is not None
    assert wrong.error.code == "invalid_user_code"
    refused("user_code_expired", complete, state, True, T0 + CODE)
    right = complete(state, True, T0 + timedelta(seconds=30))
    [claimed] = right.events
    assert isinstance(claimed, RegistrationClaimed)
    assert (claimed.credential_id, claimed.auth_method, claimed.user_id) == (
        "cred_rt1", "email_link", "usr_ana",
    )  # fmt: skip
    assert (claimed.max_deliveries, claimed.deliver_until) == (0, None)
    assert right.revoke == ("cred_pre",)
    refused("already_claimed", complete, apply(state, right), True)


def test_complete_after_the_link_window_still_works() -> None:
    """The code lives `otp_ttl` from the confirmation, even past the link's window (the
    person confirmed in time; the agent types after)."""
    late = confirmed(T0 + LINK - timedelta(seconds=1))
    assert complete(late, True, T0 + LINK + timedelta(seconds=60)).claimed is not None


def test_complete_refuses_an_ended_registration() -> None:
    """A registration revoked after the confirmation completes no more (410)."""
    state = confirmed()
    revoked = evolve(state, RegistrationRevoked(reason="operator"))
    assert revoked is not None
    refused("claim_expired", complete, revoked, True)


def presented(status: str = "active", reason: str | None = None) -> Presented:
    return Presented(credential_id="cred_rt1", kind="refresh_token", registration_id="reg_1",
                     status=status, end_reason=reason, expires_at=T0 + timedelta(days=30),
                     version=1)  # fmt: skip


def claimed_state() -> Registration:
    state = confirmed()
    return apply(state, complete(state, True))


def test_refresh_rotates_a_live_token_of_a_claimed_registration() -> None:
    """A live refresh token of a claimed registration rotates at its own version."""
    decided = decide_refresh(presented(), claimed_state(), family=(("cred_rt1", 1),), now=T0)
    assert isinstance(decided, Rotate)
    assert (decided.credential_id, decided.version) == ("cred_rt1", 1)


def test_refresh_reuse_and_refusals() -> None:
    """A rotated token coming back ends the family; anything else not live is refused, with
    nothing to write: unknown, another kind, revoked otherwise, expired, unclaimed or ended
    registration."""
    family = (("cred_rt2", 1),)
    reuse = decide_refresh(presented("revoked", "rotated"), claimed_state(), family=family, now=T0)
    assert reuse == Reuse(family)
    ended = evolve(claimed_state(), RegistrationRevoked(reason="operator"))
    api_key = Presented("cred_k", "api_key", "reg_1", "active", None, None, 1)
    for token, state, at in [
        (None, claimed_state(), T0),
        (api_key, claimed_state(), T0),
        (presented("revoked", "agent"), claimed_state(), T0),
        (presented(), claimed_state(), T0 + timedelta(days=30)),
        (presented(), confirmed(), T0),
        (presented(), ended, T0),
        (presented(), None, T0),
    ]:
        refused("invalid_refresh_token", decide_refresh, token, state, family=family, now=at)


def test_the_lock_at_complete_ends_the_tokens() -> None:
    """The wrong code that reaches the registration's §6.4 limit locks it and ends its active
    credentials with it (as V5's lock)."""
    state = replace(confirmed(), misses=LIMITS.max_registration_misses - 1)
    locked = complete(state, False)
    assert [type(e) for e in locked.events] == [OtpFailed, ClaimAttemptLocked, RegistrationExpired]
    assert locked.revoke == ("cred_pre",)
    assert complete(confirmed(), False).revoke == ()
