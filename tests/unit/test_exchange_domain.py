"""V6's rule, `decide_exchange` (docs/design/v06-dialect.md, section 3.3): which assertions
still exchange, for which scopes, from the registration's or the delegation's state; and the
operator's end of a v0.6 registration (O-R, `decide_revoke`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.registration import (
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationErased,
    RegistrationEvent,
    RegistrationExpired,
    RegistrationKind,
    RegistrationRevoked,
)
from service.crypto.tokens import registration_id_for_identity
from service.domain.errors import ProtocolError
from service.domain.exchange import DelegationSubject, decide_exchange, delegation_of
from service.domain.registration import Registration, decide_revoke, fold
from service.domain.trust_list import delegation_id_for

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
TTL = timedelta(days=1)
ALL = ("api.read", "api.write", "api.admin")
PRE, POST = ("api.read",), ("api.read", "api.write")


def created(kind: RegistrationKind = "anonymous", dialect: str = "v06") -> RegistrationCreated:
    return RegistrationCreated(
        registration_id="reg_a",
        kind=kind,
        requested_credential_type="access_token",
        claim_token_hash="c" * 64,
        expires_at=T0 + TTL,
        pre_claim_scopes=PRE if kind == "anonymous" else (),
        post_claim_scopes=POST,
        credential_id=None if dialect == "v06" else "cred_1",
        dialect=dialect,  # type: ignore[arg-type]
    )


def claimed() -> RegistrationClaimed:
    return RegistrationClaimed(attempt_id="cla_1", user_id="usr_1", credential_id=None)


def state(*events: RegistrationEvent) -> Registration:
    folded = fold(list(events))
    assert folded is not None
    return folded


def claimed_state(kind: RegistrationKind = "anonymous") -> Registration:
    """Claimed, without folding an attempt: the claim's own fold needs one, the rule does not."""
    return replace(state(created(kind)), status="claimed", user_id="usr_1", version=4)


def refused(subject: Registration | DelegationSubject | None, gen: int, now: datetime) -> str:
    with pytest.raises(ProtocolError) as caught:
        decide_exchange(subject, sub="reg_a", gen=gen, scopes_supported=ALL, now=now)
    assert caught.value.code == "invalid_grant"
    assert caught.value.status == 400
    return caught.value.message


def test_fresh_anonymous_registration_exchanges_for_pre_claim_scopes() -> None:
    """Stage 0, gen 0: the pre-claim scopes, no user, issued via anonymous, at version 1."""
    grant = decide_exchange(state(created()), sub="reg_a", gen=0, scopes_supported=ALL, now=T0)
    assert grant.scopes == PRE
    assert grant.issued_via == "anonymous"
    assert (grant.stream_id, grant.version) == ("reg_a", 1)
    assert (grant.registration_id, grant.user_id) == ("reg_a", None)
    assert grant.issuer is None
    assert grant.delegation_id is None
    assert grant.not_after == T0 + TTL  # its token ends by the registration's end


def test_claimed_registration_exchanges_gen_1_for_post_claim_scopes() -> None:
    """Stage 1, gen 1: the post-claim scopes recorded at creation, for the claiming user;
    its token is not cut short (a claimed registration does not end by time, R8)."""
    grant = decide_exchange(claimed_state(), sub="reg_a", gen=1, scopes_supported=ALL, now=T0)
    assert grant.scopes == POST
    assert grant.user_id == "usr_1"
    assert grant.version == 4
    assert grant.not_after is None


def test_a_pre_claim_assertion_dies_with_the_claim() -> None:
    """O-F (case 18): gen 0 after the claim is refused; gen 1 before it too."""
    assert "before the registration was claimed" in refused(claimed_state(), 0, T0)
    refused(state(created()), 1, T0)


@pytest.mark.parametrize(
    "ending",
    [
        RegistrationExpired(reason="ttl"),
        RegistrationRevoked(reason="operator"),
        RegistrationErased(reason="erasure"),
    ],
)
def test_ended_registrations_do_not_exchange(ending: RegistrationEvent) -> None:
    """Expired, revoked (O-R) or erased: invalid_grant, whatever the generation."""
    ended = state(created(), ending)
    for gen in (0, 1):
        refused(ended, gen, T0)


def test_past_its_ttl_an_unclaimed_registration_does_not_exchange() -> None:
    """The expiry worker may not have run yet: the TTL alone ends it; a claimed one lives on."""
    refused(state(created()), 0, T0 + TTL)
    grant = decide_exchange(
        claimed_state(), sub="reg_a", gen=1, scopes_supported=ALL, now=T0 + 2 * TTL
    )
    assert grant.scopes == POST


def test_only_anonymous_registrations_exchange_before_the_claim() -> None:
    """A service_auth registration holds no pre-claim assertion: gen 0 is refused."""
    refused(state(created("service_auth")), 0, T0)
    grant = decide_exchange(
        claimed_state("service_auth"), sub="reg_a", gen=1, scopes_supported=ALL, now=T0
    )
    assert grant.issued_via == "service_auth"


def test_v1_and_step_up_registrations_are_not_exchanged_by_their_own_id() -> None:
    """No v0.6 assertion names a v1 registration; a step-up's go through its delegation."""
    refused(state(created(dialect="v1")), 0, T0)
    refused(claimed_state("id_jag"), 1, T0)


def test_unknown_subject_is_invalid_grant() -> None:
    assert "unknown" in refused(None, 0, T0)


def subject(revocations: int = 0, erased: bool = False) -> DelegationSubject:
    return DelegationSubject(
        delegation_id="dlg_x", version=3, revocations=revocations, user_id="usr_9",
        user_erased=erased, issuer="https://idp.example",
    )  # fmt: skip


def test_delegation_exchanges_for_every_scope_at_its_generation() -> None:
    """An ID-JAG subject: every supported scope, the user, the provider and the delegation."""
    grant = decide_exchange(
        subject(revocations=2), sub="reg_x", gen=2, scopes_supported=ALL, now=T0
    )
    assert grant.scopes == ALL
    assert grant.issued_via == "id_jag"
    assert (grant.stream_id, grant.version) == ("dlg_x", 3)
    assert (grant.registration_id, grant.user_id) == ("reg_x", "usr_9")
    assert (grant.issuer, grant.delegation_id) == ("https://idp.example", "dlg_x")


def test_a_revocation_ends_every_older_assertion_of_the_subject() -> None:
    """Case 29: gen below the revocation count is refused, and so is an erased user."""
    refused(subject(revocations=1), 0, T0)
    refused(subject(revocations=0, erased=True), 0, T0)


def test_delegation_of_reads_only_deterministic_ids() -> None:
    """The ID-JAG subject's registration id maps to its delegation id; random ids do not."""
    issuer, sub, audience = "https://idp.example", "user-1", "https://auth.example"
    rid = registration_id_for_identity(issuer, sub, audience)
    assert delegation_of(rid) == delegation_id_for(issuer, sub, audience)
    for other in ("reg_AbCdEfGhIjKlMnOpQrStUv", "reg_0123", "dlg_" + rid[4:], rid + "0"):
        assert delegation_of(other) is None


@given(gen=st.integers(min_value=0, max_value=5), claimed_first=st.booleans())
def test_scopes_never_exceed_the_stage(gen: int, claimed_first: bool) -> None:
    """Whatever the generation offered, a registration grants exactly its stage's scopes,
    and only for the generation of that stage."""
    current = claimed_state() if claimed_first else state(created())
    if gen != current.stage:
        refused(current, gen, T0)
        return
    grant = decide_exchange(current, sub="reg_a", gen=gen, scopes_supported=ALL, now=T0)
    assert grant.scopes == (POST if claimed_first else PRE)


def test_decide_revoke_ends_live_v06_registrations_only() -> None:
    """O-R: an unclaimed or claimed v0.6 registration is revoked with the reason and note;
    a v1 one, an ended one, or one past its TTL unclaimed gets nothing."""
    for live in (state(created()), claimed_state()):
        [event] = decide_revoke(live, reason="operator", note="incident 7", now=T0)
        assert event == RegistrationRevoked(reason="operator", note="incident 7")
    assert decide_revoke(state(created(dialect="v1")), reason="operator", note=None, now=T0) == []
    revoked = state(created(), RegistrationRevoked(reason="operator"))
    assert decide_revoke(revoked, reason="operator", note=None, now=T0) == []
    assert decide_revoke(state(created()), reason="operator", note=None, now=T0 + TTL) == []
