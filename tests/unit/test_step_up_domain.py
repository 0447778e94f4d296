"""V1 with an ID-JAG at the v0.6 door (service/domain/step_up.py; design section 3.3): which
way a verified subject is served, and the events of each way, applied through the folds
(registration, delegation) so each later decision sees what the log would give it."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

import pytest

from events.delegation import DelegationCreated, DelegationRevoked, DelegationUsed
from events.registration import (
    ClaimAttemptStarted,
    OtpIssued,
    RegistrationCreated,
    RegistrationRevoked,
    StepUp,
)
from service.domain.claim import Decision, OtpLimits
from service.domain.errors import ProtocolError
from service.domain.registration import Registration, evolve, fold
from service.domain.step_up import (
    Clean,
    NewStepUp,
    Opened,
    Presented,
    Provision,
    StepUpTerms,
    UserMatch,
    decide_identity,
    login_fresh,
)
from service.domain.step_up import StepUp as StepUpDecision
from service.domain.trust_list import DelegationState, evolve_delegation
from service.domain.user_code import (
    Claimant,
    Deliver,
    DeliveryTerms,
    NewCode,
    Refused,
    decide_enter_code,
    decide_open_attempt,
    decide_poll,
)

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
ISSUER = "http://127.0.0.1:8000"
ALL = ("api.read", "api.write")
TERMS = StepUpTerms(
    registration_ttl=timedelta(days=1),
    link_ttl=timedelta(seconds=600),
    code_ttl=timedelta(seconds=600),
    post_claim_scopes=ALL,
)
ANA = UserMatch(user_id="usr_ana", matched_by="email", email_index="idx-ana")


def presented(jti: str = "jti-1", audience: str | None = None) -> Presented:
    return Presented(
        delegation_id="dlg_1",
        issuer="https://idp.example",
        jti=jti,
        client_id="https://agent.example",
        audience=audience,
        agent_platform="claude",
    )


def new(n: int = 1, hint: str = "idx-ana") -> NewStepUp:
    """What the command mints for the n-th presentation: its own `reg_n`, claim token, the
    subject sealed under the matched user's key, and the attempt with the hint."""
    return NewStepUp(
        registration_id=f"reg_{n}",
        claim_token_hash=f"clm-hash-{n}",
        subject_sealed="pii1.usr_ana.sub",
        code=NewCode(f"cla_{n}", f"cvt-{n}", hint, f"pii1.cla_{n}.ana", f"hmac-{n}"),
    )


def folded(events: tuple[object, ...]) -> Registration:
    state = fold(list(events))  # type: ignore[arg-type]
    assert state is not None
    return state


def step_up(n: int = 1, *, open_one: Registration | None = None, at: datetime = T0) -> Opened:
    """The n-th presentation of the subject's ID-JAG: decided, then opened."""
    decision = decide_identity(None, ANA, open_one)
    assert isinstance(decision, StepUpDecision)
    return decision.open(presented(f"jti-{n}"), new(n), now=at, terms=TERMS)


def delegation_of(
    events: tuple[object, ...], state: DelegationState | None = None
) -> DelegationState:
    version = 0 if state is None else state.version
    for event in events:
        version += 1
        state = evolve_delegation(state, event, version)  # type: ignore[arg-type]
    assert state is not None
    return state


def type_code(
    state: Registration, *, session: str = "idx-ana", user: str = "usr_ana", code: str = ""
) -> Decision:
    """V5 by the person signed in as `session`, typing `code` (default: the current
    attempt's) on the current attempt's link."""
    attempt = state.attempt
    assert attempt is not None
    typed = code or attempt.otp_hash or ""
    return decide_enter_code(
        state,
        link_hash=attempt.token_hash,
        signed_in_index=session,
        code_matches=lambda _attempt, stored: hmac.compare_digest(stored, typed),
        now=T0,
        limits=OtpLimits(),
        claimant=Claimant(user, "email_link", ISSUER),
        terms=DeliveryTerms(),
        active=(),
    )


# -- which way ------------------------------------------------------------------------------


def test_a_known_subject_is_clean_whatever_matches() -> None:
    """The delegation exists: Clean, even with an address match and an open step-up; its one
    event is `delegation.used` with no credential and the audience form used (O-D)."""
    delegation = delegation_of(
        Provision().events(presented(), user_id="usr_ana", subject_sealed="s", issuer=ISSUER)
    )
    open_one = folded(step_up().events)
    decision = decide_identity(delegation, ANA, open_one)
    assert decision == Clean(delegation)
    assert isinstance(decision, Clean)
    used = decision.events(presented("jti-2", audience=f"{ISSUER}/api/"))
    assert used == (
        DelegationUsed(
            credential_id=None, jti="jti-2", client_id="https://agent.example",
            agent_platform="claude", audience=f"{ISSUER}/api/",
        ),
    )  # fmt: skip
    assert delegation_of(used, delegation).version == delegation.version + 1


def test_a_revoked_delegation_is_clean_again() -> None:
    """O9 at this door (case 33): after a SET revoked it, a fresh ID-JAG is a clean match and
    its `delegation.used` makes the delegation live again."""
    delegation = delegation_of(
        Provision().events(presented(), user_id="usr_ana", subject_sealed="s", issuer=ISSUER)
    )
    delegation = delegation_of((DelegationRevoked(reason="logout", jti="set-1"),), delegation)
    assert (delegation.revoked, delegation.revocations) == (True, 1)
    decision = decide_identity(delegation, ANA, None)
    assert isinstance(decision, Clean)
    after = delegation_of(decision.events(presented("jti-3")), delegation)
    assert (after.revoked, after.revocations) == (False, 1)


@pytest.mark.parametrize("matched_by", ["email", "phone"])
def test_an_address_match_always_steps_up(matched_by: str) -> None:
    """No delegation, an existing user matched by verified address or phone, with an address
    to sign in with: StepUp. There is no issuer setting to consult: at this door a match
    never links silently (the lead's answer to open question 2)."""
    match = UserMatch(user_id="usr_ana", matched_by=matched_by, email_index="idx-ana")  # type: ignore[arg-type]
    assert decide_identity(None, match, None) == StepUpDecision(match, None)


def test_a_phone_match_without_an_address_provisions() -> None:
    """A user found by phone who has no address to sign in with cannot run the ceremony:
    Provision, as when nothing matched."""
    phone_only = UserMatch(user_id="usr_pho", matched_by="phone", email_index=None)
    assert decide_identity(None, phone_only, None) == Provision()
    assert decide_identity(None, None, None) == Provision()


def test_provision_creates_and_uses_the_delegation() -> None:
    """JIT: `delegation.created` (provisioned, audience our issuer whatever `aud` form the
    ID-JAG used) and `delegation.used`, one append from version 0."""
    events = Provision().events(
        presented(audience=f"{ISSUER}/api/"), user_id="usr_new", subject_sealed="pii1.usr_new.s",
        issuer=ISSUER,
    )  # fmt: skip
    assert events[0] == DelegationCreated(
        delegation_id="dlg_1", issuer="https://idp.example", audience=ISSUER,
        subject_sealed="pii1.usr_new.s", user_id="usr_new", matched_by="provisioned",
    )  # fmt: skip
    assert isinstance(events[1], DelegationUsed)
    state = delegation_of(events)
    assert (state.user_id, state.version, state.revocations) == ("usr_new", 2, 0)


def test_only_a_step_up_may_be_superseded() -> None:
    """A registration that is not a step-up given as the subject's open one is a caller's
    mistake, not a decision."""
    anonymous = folded(
        (
            RegistrationCreated(
                registration_id="reg_a", kind="anonymous", requested_credential_type="access_token",
                claim_token_hash="c", expires_at=T0 + TERMS.registration_ttl,
                pre_claim_scopes=("api.read",), post_claim_scopes=ALL, dialect="v06",
            ),
        )
    )  # fmt: skip
    with pytest.raises(ValueError, match="not a step-up"):
        decide_identity(None, ANA, anonymous)


# -- the step-up row --------------------------------------------------------------------------


def test_a_step_up_opens_a_registration_with_its_ceremony() -> None:
    """R2'': `registration.created` (kind id_jag, v0.6, no pre-claim scope, the StepUp facts),
    `claim.attempt_started` (user_code, the matched user's address as the hint) and
    `claim.otp_issued`; nothing to supersede. Folded: pending, challenged."""
    opened = step_up()
    assert (opened.superseded, opened.superseded_id) == ((), None)
    created, started, issued = opened.events
    assert created == RegistrationCreated(
        registration_id="reg_1", kind="id_jag", requested_credential_type="access_token",
        claim_token_hash="clm-hash-1", expires_at=T0 + TERMS.registration_ttl,
        pre_claim_scopes=(), post_claim_scopes=ALL, dialect="v06",
        step_up=StepUp(
            delegation_id="dlg_1", issuer="https://idp.example", subject_sealed="pii1.usr_ana.sub",
            user_id="usr_ana", matched_by="email", jti="jti-1", client_id="https://agent.example",
        ),
    )  # fmt: skip
    assert started == ClaimAttemptStarted(
        attempt_id="cla_1", attempt_token_hash="cvt-1", email_sealed="pii1.cla_1.ana",
        email_index="idx-ana", link_expires_at=T0 + TERMS.link_ttl, ceremony="user_code",
    )  # fmt: skip
    assert issued == OtpIssued(
        attempt_id="cla_1", otp_hash="hmac-1", expires_at=T0 + TERMS.code_ttl
    )
    state = folded(opened.events)
    assert state.attempt is not None
    assert (state.status, state.attempt.status, state.stage) == ("pending_claim", "challenged", 0)
    answer = decide_poll(state, now=T0, too_fast=False)
    assert isinstance(answer, Refused)
    assert answer.code == "authorization_pending"


def test_the_hint_must_be_the_matched_users_address() -> None:
    """The command's minted hint is checked: another address cannot become the hint."""
    decision = decide_identity(None, ANA, None)
    assert isinstance(decision, StepUpDecision)
    with pytest.raises(ValueError, match="hint"):
        decision.open(presented(), new(1, hint="idx-mallory"), now=T0, terms=TERMS)


def test_presenting_again_supersedes_the_open_step_up() -> None:
    """R2'' with an open step-up: `registration.revoked` superseded on its stream; it is then
    revoked, its link and code dead and its poll expired_token, while the new one is live."""
    first = folded(step_up(1).events)
    second = step_up(2, open_one=first)
    assert (second.superseded, second.superseded_id) == (
        (RegistrationRevoked(reason="superseded"),), "reg_1",
    )  # fmt: skip
    first = folded((*step_up(1).events, *second.superseded))
    assert first.attempt is not None
    assert (first.status, first.attempt.status) == ("revoked", "void")
    with pytest.raises(ProtocolError) as old:
        type_code(first, code="hmac-1")
    assert old.value.code == "claim_expired"
    refused = decide_poll(first, now=T0, too_fast=False)
    assert isinstance(refused, Refused)
    assert refused.code == "expired_token"
    assert type_code(folded(second.events)).claimed is not None


def test_an_ended_or_claimed_step_up_is_not_revoked_again() -> None:
    """Only a step-up still running is superseded: one past its TTL or already claimed is
    left as it is."""
    first = folded(step_up(1).events)
    late = step_up(2, open_one=first, at=T0 + TERMS.registration_ttl)
    assert (late.superseded, late.superseded_id) == ((), None)
    claimed = first
    for event in type_code(first).events:
        claimed = evolve(claimed, event)  # type: ignore[arg-type]
    assert claimed.status == "claimed"
    assert step_up(2, open_one=claimed).superseded == ()


def test_another_subjects_step_up_is_not_superseded() -> None:
    """A step-up of another delegation given as the open one is refused (caller's mistake)."""
    first = folded(step_up(1).events)
    decision = decide_identity(None, ANA, first)
    assert isinstance(decision, StepUpDecision)
    other = Presented(
        delegation_id="dlg_other", issuer="https://idp.example", jti="j", client_id="c"
    )
    with pytest.raises(ValueError, match="another subject"):
        decision.open(other, new(2), now=T0, terms=TERMS)


def test_the_matched_owner_claims_and_the_subject_is_then_clean() -> None:
    """R6' for a step-up, then case 24: the owner's code creates the delegation (step_up);
    the claim token delivers; the next ID-JAG for the subject is Clean."""
    state = folded(step_up().events)
    decision = type_code(state)
    assert decision.claimed is not None
    (made,) = decision.delegation
    assert isinstance(made, DelegationCreated)
    assert (made.matched_by, made.user_id, made.audience) == ("step_up", "usr_ana", ISSUER)
    for event in decision.events:
        state = evolve(state, event)  # type: ignore[arg-type]
    assert decide_poll(state, now=T0, too_fast=False) == Deliver("reg_1", "usr_ana", ALL)
    delegation = delegation_of(decision.delegation)
    again = decide_identity(delegation, ANA, None)
    assert isinstance(again, Clean)
    assert again.delegation.user_id == "usr_ana"


def test_only_the_matched_account_may_claim() -> None:
    """O-J and the design's check: another address, or another user behind the right one,
    is 403 and writes nothing."""
    state = folded(step_up().events)
    for session, user in (("idx-bob", "usr_ana"), ("idx-ana", "usr_bob")):
        with pytest.raises(ProtocolError) as refused:
            type_code(state, session=session, user=user)
        assert refused.value.code == "wrong_account"


def test_v2_on_a_step_up_keeps_the_matched_address() -> None:
    """O-I: the agent's V2 with another address starts a new attempt bound to the matched
    user's address all the same."""
    state = folded(step_up().events)
    code = NewCode("cla_2", "cvt-2", "idx-mallory", "pii1.cla_2.mallory", "hmac-2")
    decision = decide_open_attempt(
        state, code, now=T0, link_ttl=TERMS.link_ttl, code_ttl=TERMS.code_ttl
    )
    for event in decision.events:
        state = evolve(state, event)  # type: ignore[arg-type]
    assert state.attempt is not None
    assert (state.attempt.attempt_id, state.attempt.email_index) == ("cla_2", "idx-ana")
    with pytest.raises(ProtocolError):
        type_code(state, session="idx-mallory")
    assert type_code(state).claimed is not None


@pytest.mark.parametrize(
    ("age", "fresh"),
    [(None, False), (0, True), (3_600, True), (3_660, True), (3_661, False), (86_400, False),
     (-60, True), (-61, False), (-3_600, False)],
)  # fmt: skip
def test_login_fresh_takes_auth_time_within_the_hour_and_the_skew(
    age: int | None, fresh: bool
) -> None:
    """V1 at the v0.6 door: `auth_time` missing, more than 3600 + 60 s old or more than 60 s
    ahead is not fresh (401 login_required); anything between is."""
    auth_time = None if age is None else T0 - timedelta(seconds=age)
    assert login_fresh(auth_time, T0) is fresh
