"""Expiry's rules: given a registration and its key at some time, which events end them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.catalogue import Event
from events.credential import (
    CredentialEvent,
    CredentialExpired,
    CredentialIssued,
    CredentialRescoped,
    CredentialRevoked,
)
from events.registration import (
    ClaimAttemptExpired,
    ClaimAttemptStarted,
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
from service.domain.expiry import (
    OVERDUE,
    CredentialState,
    Dated,
    ExpiryDecision,
    decide_expiry,
    due_at,
    evolve_credential,
    fold_credential,
)
from service.domain.registration import Registration, evolve, fold

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
TTL = timedelta(days=1)
LINK = timedelta(seconds=600)
OTP = timedelta(seconds=600)
TOKEN_TTL = timedelta(hours=1)
LIMITS = OtpLimits(max_code_misses=3, max_mints=4, max_registration_misses=5)


def created(kind: str = "anonymous") -> RegistrationCreated:
    return RegistrationCreated(
        registration_id="reg_1",
        kind=kind,  # type: ignore[arg-type]
        requested_credential_type="api_key",
        claim_token_hash="c" * 64,
        expires_at=T0 + TTL,
        pre_claim_scopes=("api.read",),
        post_claim_scopes=("api.read", "api.write"),
        credential_id="cred_1" if kind == "anonymous" else None,
    )


def key(expires_at: datetime = T0 + TTL, kind: str = "api_key") -> CredentialIssued:
    return CredentialIssued(
        credential_id="cred_1",
        kind=kind,  # type: ignore[arg-type]
        token_hash="k" * 64,
        scopes=("api.read",),
        issued_via="anonymous",
        registration_id="reg_1",
        expires_at=expires_at,
    )


def started(n: int = 1, at: datetime = T0) -> ClaimAttemptStarted:
    return ClaimAttemptStarted(
        attempt_id=f"cla_{n}",
        attempt_token_hash=f"t{n}",
        email_sealed="sealed-ana",
        email_index="idx-ana",
        link_expires_at=at + LINK,
    )


def issued(n: int = 1, at: datetime = T0) -> OtpIssued:
    return OtpIssued(attempt_id=f"cla_{n}", otp_hash=f"h{n}", expires_at=at + OTP)


def registration(*events: RegistrationEvent) -> Registration:
    state = fold(list(events))
    assert state is not None
    return state


def credential(*events: CredentialEvent) -> CredentialState:
    state = fold_credential(events)
    assert state is not None
    return state


def apply(
    reg: Registration, cred: CredentialState | None, decision: ExpiryDecision
) -> tuple[Registration, CredentialState | None]:
    for dated in decision.registration:
        reg = evolve(reg, dated.event)  # type: ignore[arg-type]
    for dated in decision.credential:
        cred = evolve_credential(cred, dated.event)  # type: ignore[arg-type]
    return reg, cred


# -- examples ---------------------------------------------------------------------------------


def test_anonymous_registration_and_its_key_end_together_at_the_ttl() -> None:
    """R7: at the TTL, registration.expired (ttl) and the key revoked (registration_expired),
    both dated at the deadline however late the decision; a moment before, nothing."""
    reg = registration(created())
    cred: CredentialState | None = credential(key())
    assert decide_expiry(reg, cred, T0 + TTL - timedelta(microseconds=1)).empty
    decision = decide_expiry(reg, cred, T0 + TTL + timedelta(hours=5))
    assert decision.registration == (Dated(RegistrationExpired(reason="ttl"), T0 + TTL),)
    revoked = CredentialRevoked(reason="registration_expired")
    assert decision.credential == (Dated(revoked, T0 + TTL),)
    reg, cred = apply(reg, cred, decision)
    assert cred is not None
    assert (reg.status, cred.status) == ("expired", "revoked")


def test_a_claimed_registration_never_expires() -> None:
    """R8: claimed ignores its TTL; its re-scoped key (no expiry) is no longer held."""
    claimed = RegistrationClaimed(attempt_id="cla_1", user_id="usr_1", credential_id="cred_1")
    reg = registration(created(), started(1), issued(1), claimed)
    cred = credential(key(), CredentialRescoped(scopes=("api.read", "api.write"), user_id="u"))
    assert decide_expiry(reg, cred, T0 + 30 * TTL).empty
    assert due_at(reg, cred) is None


def test_the_link_window_ends_the_attempt_then_the_ttl_voids_it() -> None:
    """§6.2: at the link window, claim.attempt_expired (dated at it); at the TTL the
    registration expires and the attempt, link_expired, becomes void."""
    reg = registration(created("verified_email"), started(1), issued(1))
    assert due_at(reg, None) == T0 + LINK
    decision = decide_expiry(reg, None, T0 + LINK)
    assert decision == ExpiryDecision((Dated(ClaimAttemptExpired(attempt_id="cla_1"), T0 + LINK),))
    reg, _ = apply(reg, None, decision)
    assert reg.attempt is not None
    assert reg.attempt.status == "link_expired"
    assert decide_expiry(reg, None, T0 + LINK + timedelta(hours=1)).empty
    assert due_at(reg, None) == T0 + TTL
    reg, _ = apply(reg, None, decide_expiry(reg, None, T0 + TTL))
    assert reg.attempt is not None
    assert (reg.status, reg.attempt.status, reg.attempt.otp_hash) == ("expired", "void", None)


def test_past_both_deadlines_each_is_recorded_with_its_own_date() -> None:
    """Worker down past the link window and the TTL: the attempt's link expired first, then
    the registration, each at its deadline, in that order, in one decision."""
    reg = registration(created("verified_email"), started(1))
    decision = decide_expiry(reg, None, T0 + 2 * TTL)
    assert decision.registration == (
        Dated(ClaimAttemptExpired(attempt_id="cla_1"), T0 + LINK),
        Dated(RegistrationExpired(reason="ttl"), T0 + TTL),
    )


def test_a_link_window_ending_after_the_ttl_is_never_recorded() -> None:
    """An attempt started in the registration's last minutes: its expiry voids the attempt
    before the link window would end, so there is no attempt event, early or late."""
    late = started(1, at=T0 + TTL - timedelta(minutes=4))
    reg = registration(created("verified_email"), late)
    assert due_at(reg, None) == T0 + TTL
    decision = decide_expiry(reg, None, T0 + TTL + timedelta(hours=2))
    assert decision.registration == (Dated(RegistrationExpired(reason="ttl"), T0 + TTL),)


def test_an_access_token_expires_by_itself_before_its_registration() -> None:
    """An anonymous access token lasts an hour: credential.expired at its exp; the open
    registration goes on until its TTL, and then nothing is left to end for the token."""
    reg = registration(created())
    cred: CredentialState | None = credential(key(T0 + TOKEN_TTL, "access_token"))
    assert due_at(reg, cred) == T0 + TOKEN_TTL
    decision = decide_expiry(reg, cred, T0 + TOKEN_TTL)
    assert decision == ExpiryDecision(credential=(Dated(CredentialExpired(), T0 + TOKEN_TTL),))
    reg, cred = apply(reg, cred, decision)
    final = decide_expiry(reg, cred, T0 + TTL)
    assert final == ExpiryDecision((Dated(RegistrationExpired(reason="ttl"), T0 + TTL),))


def test_after_downtime_each_end_keeps_its_own_date() -> None:
    """Both deadlines long past: the token expired at its own exp (it came first), the
    registration at its TTL."""
    reg, cred = registration(created()), credential(key(T0 + TOKEN_TTL, "access_token"))
    decision = decide_expiry(reg, cred, T0 + 3 * TTL)
    assert decision.credential == (Dated(CredentialExpired(), T0 + TOKEN_TTL),)
    assert decision.registration == (Dated(RegistrationExpired(reason="ttl"), T0 + TTL),)


def test_the_key_of_a_locked_registration_is_revoked_when_seen() -> None:
    """§6.4: a registration expired early (locked) still holds an active key: it is owed a
    revocation at once, dated when it was decided."""
    reg = registration(created(), started(1), RegistrationExpired(reason="locked"))
    cred = credential(key())
    assert due_at(reg, cred) == OVERDUE
    at = T0 + timedelta(minutes=3)
    decision = decide_expiry(reg, cred, at)
    assert decision.registration == ()
    assert decision.credential == (Dated(CredentialRevoked(reason="registration_expired"), at),)


def test_an_open_registration_without_its_key_is_left_for_the_pair() -> None:
    """A registration is decided with the key it holds, never without it: both end in one
    append or neither does."""
    reg = registration(created())
    assert decide_expiry(reg, None, T0 + 2 * TTL).empty
    assert due_at(reg, None) is None
    other = CredentialState("cred_9", "reg_1", None)
    assert decide_expiry(reg, other, T0 + 2 * TTL).empty


def v06_token(n: int, expires_at: datetime) -> CredentialState:
    """A pre-claim access token minted at V6 for the v0.6 registration reg_1."""
    issued = CredentialIssued(
        credential_id=f"cred_t{n}",
        kind="access_token",
        token_hash=f"{n}" * 64,
        scopes=("api.read",),
        issued_via="anonymous",
        registration_id="reg_1",
        expires_at=expires_at,
    )
    return credential(issued)


def v06_created() -> RegistrationCreated:
    return msgspec.structs.replace(created(), credential_id=None, dialect="v06",
                                   requested_credential_type="access_token")  # fmt: skip


def test_a_v06_registration_and_its_tokens_end_together() -> None:
    """A v0.6 registration holds no key but its V6 tokens: at its TTL, registration.expired
    and, in the same decision, each active token revoked (registration_expired) at the TTL,
    or expired at its own end when that came first; an ended token gets nothing."""
    reg = registration(v06_created())
    early, capped = v06_token(1, T0 + TOKEN_TTL), v06_token(2, T0 + TTL)
    gone = evolve_credential(v06_token(3, T0 + TTL), CredentialRevoked(reason="agent"))
    tokens = (early, capped, gone)
    assert due_at(reg, None, tokens) == T0 + TOKEN_TTL
    decision = decide_expiry(reg, None, T0 + TTL + timedelta(hours=1), tokens)
    assert decision.registration == (Dated(RegistrationExpired(reason="ttl"), T0 + TTL),)
    assert decision.credential == ()
    revoked = CredentialRevoked(reason="registration_expired")
    assert decision.tokens == (
        ("cred_t1", (Dated(CredentialExpired(), T0 + TOKEN_TTL),)),
        ("cred_t2", (Dated(revoked, T0 + TTL),)),
    )
    before = decide_expiry(reg, None, T0 + TOKEN_TTL, tokens)  # only the first token is due
    assert before == ExpiryDecision(
        tokens=(("cred_t1", (Dated(CredentialExpired(), T0 + TOKEN_TTL),)),)
    )


def test_the_tokens_of_a_locked_v06_registration_are_revoked_when_seen() -> None:
    """A v0.6 registration expired early (locked) still holding a token: owed at once."""
    reg = registration(v06_created(), RegistrationExpired(reason="locked"))
    token = v06_token(1, T0 + TTL)
    assert due_at(reg, None, (token,)) == OVERDUE
    at = T0 + timedelta(minutes=3)
    decision = decide_expiry(reg, None, at, (token,))
    revoked = CredentialRevoked(reason="registration_expired")
    assert decision == ExpiryDecision(tokens=(("cred_t1", (Dated(revoked, at),)),))


def test_a_claimed_v06_registrations_tokens_expire_by_themselves() -> None:
    """After the claim a v0.6 registration holds nothing: its tokens end at their own exp."""
    claimed = RegistrationClaimed(attempt_id="cla_1", user_id="usr_1", credential_id=None)
    reg = registration(v06_created(), started(1), issued(1), claimed)
    token = v06_token(1, T0 + TOKEN_TTL)
    assert due_at(reg, None, (token,)) == T0 + TOKEN_TTL
    decision = decide_expiry(reg, token, T0 + 2 * TTL)
    assert decision == ExpiryDecision(credential=(Dated(CredentialExpired(), T0 + TOKEN_TTL),))


def test_an_ended_credential_stays_ended() -> None:
    """As the projection: a revoked key expiring later stays revoked; nothing more is due."""
    cred = credential(key(), CredentialRevoked(reason="operator"), CredentialExpired())
    assert (cred.status, cred.version) == ("revoked", 3)
    assert decide_expiry(None, cred, T0 + 2 * TTL).empty
    with pytest.raises(ValueError, match=r"before credential\.issued"):
        evolve_credential(None, CredentialExpired())


def test_a_link_expired_attempt_mints_no_code_but_its_last_code_completes() -> None:
    """§6.2: in link_expired the last code still completes until its own end; E7 is 410."""
    reg = registration(created(), started(1), issued(1, at=T0 + LINK - timedelta(seconds=1)))
    link_ended = ExpiryDecision((Dated(ClaimAttemptExpired(attempt_id="cla_1"), T0),))
    reg, _ = apply(reg, None, link_ended)
    with pytest.raises(ProtocolError) as caught:
        decide_issue_otp(reg, token_hash="t1", otp_hash="h", now=T0, otp_ttl=OTP, limits=LIMITS)
    assert caught.value.code == "claim_expired"
    done = decide_complete(
        reg,
        otp_matches=lambda _a, _h: True,
        now=T0 + LINK + timedelta(seconds=30),
        limits=LIMITS,
        user_id="usr_1",
        credential_id="cred_1",
    )
    assert done.error is None
    assert isinstance(done.events[0], RegistrationClaimed)


# -- properties -------------------------------------------------------------------------------


@dataclass
class Timeline:
    """One registration (and the key it holds) driven through the claim ceremony's rules."""

    kind: str
    credential_kind: str
    registration: Registration | None = None
    credential: CredentialState | None = None
    log: list[Event] = field(default_factory=list)
    recorded: list[Dated] = field(default_factory=list)  # by the worker's steps
    attempts: int = 0

    def __post_init__(self) -> None:
        if self.kind == "verified_email":
            self.registration = registration(created(self.kind), started(1))
            return
        self.registration = registration(created(self.kind))
        if self.kind == "anonymous":
            own = T0 + (TOKEN_TTL if self.credential_kind == "access_token" else TTL)
            self.credential = credential(key(own, self.credential_kind))

    def apply(self, events: tuple[Event, ...]) -> None:
        for event in events:
            self.log.append(event)
            if isinstance(event, CredentialExpired | CredentialRevoked | CredentialRescoped):
                self.credential = evolve_credential(self.credential, event)
            else:
                self.registration = evolve(self.registration, event)  # type: ignore[arg-type]
            if isinstance(event, RegistrationClaimed) and self.credential is not None:
                rescoped = CredentialRescoped(scopes=("api.read", "api.write"), user_id="u")
                self.credential = evolve_credential(self.credential, rescoped)

    def command(self, verb: str, now: datetime) -> object:
        """The answer to one command (events and refusal), applying what it records."""
        reg = self.registration
        assert reg is not None
        try:
            if verb in ("claim_same", "claim_other"):
                self.attempts += 1
                email = "ana" if verb == "claim_same" else f"e{self.attempts}"
                n = self.attempts + 1
                new = NewAttempt(f"cla_{n}", f"t{n}", f"idx-{email}", f"sealed-{email}")
                decision = decide_start_claim(reg, new, now=now, link_ttl=LINK)
            elif verb == "mint":
                token = reg.attempt.token_hash if reg.attempt is not None else "none"
                decision = decide_issue_otp(
                    reg, token_hash=token, otp_hash=f"h@{now}", now=now, otp_ttl=OTP, limits=LIMITS
                )
            else:
                decision = decide_complete(
                    reg,
                    otp_matches=lambda _a, _h: verb == "right",
                    now=now,
                    limits=LIMITS,
                    user_id="usr_1",
                    credential_id="cred_1",
                )
        except ProtocolError as refused:
            return refused.code
        self.apply(decision.events)
        return _answer(decision)

    def usable(self, now: datetime) -> bool:
        """The credential check's rule (service/caches/credentials.py): active, not past."""
        cred = self.credential
        return (
            cred is not None
            and cred.status == "active"
            and (cred.expires_at is None or now < cred.expires_at)
        )

    def expire(self, now: datetime) -> None:
        """The worker's step: record what is due, then nothing more is."""
        decision = decide_expiry(self.registration, self.credential, now)
        due = due_at(self.registration, self.credential)
        assert decision.empty == (due is None or due > now)
        for dated in (*decision.registration, *decision.credential):
            assert dated.at <= now
            self.recorded.append(dated)
            self.apply((dated.event,))
        assert decide_expiry(self.registration, self.credential, now).empty
        after = due_at(self.registration, self.credential)
        assert after is None or after > now


def _answer(decision: Decision) -> object:
    return decision.events, decision.error.code if decision.error is not None else None


VERBS = ["claim_same", "claim_other", "mint", "wrong", "right", "wait", "wait_long", "expire"]


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["anonymous", "verified_email"]),
    script=st.lists(st.sampled_from(VERBS), max_size=40),
)
def test_recording_expiry_never_changes_an_answer(kind: str, script: list[str]) -> None:
    """Two timelines run the same commands; one also has the worker's steps. Every E5, E7
    and E8 answer is the same on both, a credential check never depends on the worker
    (except that a locked registration's key is revoked once the worker sees it), and each
    worker step records exactly what is due, once, dated no later than it runs. (The
    anonymous flow issues API keys only, as service/tenancy/config.py offers it.)"""
    plain = Timeline(kind, "api_key")
    worked = Timeline(kind, "api_key")
    now = T0
    for verb in script:
        if verb == "wait":
            now += timedelta(minutes=7)
        elif verb == "wait_long":
            now += timedelta(hours=9)
        elif verb == "expire":
            worked.expire(now)
        elif not (kind == "verified_email" and verb.startswith("claim")):  # E5: 409 either way
            assert plain.command(verb, now) == worked.command(verb, now)
        locked = plain.registration is not None and plain.registration.status == "expired"
        if not locked:
            assert plain.usable(now) == worked.usable(now)
        assert worked.usable(now) <= plain.usable(now)
    first = [created(kind)] + ([started(1)] if kind == "verified_email" else [])
    recorded = [e for e in worked.log if not isinstance(e, CredentialEvent)]
    replayed = fold([*first, *recorded])  # type: ignore[list-item]
    assert replayed == worked.registration  # replaying the log gives the live state


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["anonymous", "verified_email"]),
    credential_kind=st.sampled_from(["api_key", "access_token"]),
    prelude=st.lists(st.sampled_from(["claim_same", "claim_other", "mint", "wait"]), max_size=8),
    downtime=st.integers(min_value=0, max_value=3 * 24 * 60),
)
def test_a_worker_that_was_down_records_what_a_running_one_would_have(
    kind: str, credential_kind: str, prelude: list[str], downtime: int
) -> None:
    """After the same commands, a worker stepping through every deadline as it passes and
    one that only runs after minutes of downtime record the same events on each stream,
    with the same dates."""
    running = Timeline(kind, credential_kind)
    down = Timeline(kind, credential_kind)
    now = T0
    for verb in prelude:
        if verb == "wait":
            now += timedelta(minutes=7)
        elif not (kind == "verified_email" and verb.startswith("claim")):
            assert running.command(verb, now) == down.command(verb, now)
    running.expire(now)
    down.expire(now)
    end = now + timedelta(minutes=downtime)
    while (due := due_at(running.registration, running.credential)) is not None and due <= end:
        running.expire(due)  # exactly at each deadline, as a worker that never slept late
    down.expire(end)

    def by_stream(timeline: Timeline) -> tuple[list[Dated], list[Dated]]:
        kinds = (CredentialExpired, CredentialRevoked)
        return (
            [d for d in timeline.recorded if not isinstance(d.event, kinds)],
            [d for d in timeline.recorded if isinstance(d.event, kinds)],
        )

    assert by_stream(down) == by_stream(running)
    assert down.registration == running.registration
    assert down.credential == running.credential
