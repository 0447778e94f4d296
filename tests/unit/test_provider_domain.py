"""The trust list's and delegations' rules, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.delegation import DelegationCreated, DelegationRevoked, DelegationUsed
from events.issuer import IssuerRemoved, IssuerTrusted, IssuerUpdated
from service.domain.trust_list import (
    NotTrusted,
    decide_remove,
    decide_trust,
    delegation_id_for,
    fold_delegation,
    fold_issuer,
    issuer_stream_id,
)
from service.providers.trust import TrustedIssuer

ENTRY = TrustedIssuer(issuer="https://idp.example", algorithms=("ES256",))


def test_first_trust_is_a_trusted_event_and_the_same_terms_again_are_nothing() -> None:
    [first] = decide_trust(None, ENTRY)
    assert isinstance(first, IssuerTrusted)
    state = fold_issuer([(first, 1)])
    assert state is not None
    assert (state.entry, state.trusted, state.version) == (ENTRY, True, 1)
    assert decide_trust(state, ENTRY) == []


def test_new_terms_for_a_trusted_issuer_are_an_update_with_the_whole_entry() -> None:
    state = fold_issuer([(decide_trust(None, ENTRY)[0], 1)])  # type: ignore[list-item]
    stricter = TrustedIssuer(
        issuer=ENTRY.issuer, algorithms=("EdDSA",), link_by_verified_email=False
    )
    [update] = decide_trust(state, stricter)
    assert isinstance(update, IssuerUpdated)
    after = fold_issuer([(decide_trust(None, ENTRY)[0], 1), (update, 2)])  # type: ignore[list-item]
    assert after is not None
    assert after.entry == stricter


def test_removal_needs_a_trusted_issuer_and_trusting_again_renews_it() -> None:
    with pytest.raises(NotTrusted):
        decide_remove(None, "no reason")
    trusted = IssuerTrusted(issuer=ENTRY.issuer, algorithms=ENTRY.algorithms)
    state = fold_issuer([(trusted, 1)])
    [removed] = decide_remove(state, "incident 42")
    assert removed == IssuerRemoved(issuer=ENTRY.issuer, reason="incident 42")
    gone = fold_issuer([(trusted, 1), (removed, 2)])
    assert gone is not None
    assert not gone.trusted
    with pytest.raises(NotTrusted):
        decide_remove(gone, None)
    [renewed] = decide_trust(gone, ENTRY)
    assert isinstance(renewed, IssuerTrusted)


def test_a_revoked_delegation_is_usable_again() -> None:
    created = DelegationCreated(
        delegation_id="dlg_1", issuer="https://idp.example", audience="https://us.example",
        subject_sealed="pii1.x", user_id="usr_1", matched_by="provisioned",
    )  # fmt: skip
    used = DelegationUsed(credential_id="cred_1", jti="j1", client_id="https://idp.example")
    revoked = DelegationRevoked(reason="logout", jti="j2", credential_ids=("cred_1",))
    state = fold_delegation([(created, 1), (used, 2), (revoked, 3)])
    assert state is not None
    assert (state.user_id, state.version, state.revoked) == ("usr_1", 3, True)
    again = fold_delegation([(created, 1), (used, 2), (revoked, 3), (used, 4)])
    assert again is not None
    assert not again.revoked


@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1))
def test_ids_are_stable_and_shaped(issuer: str, subject: str, audience: str) -> None:
    delegation = delegation_id_for(issuer, subject, audience)
    assert delegation == delegation_id_for(issuer, subject, audience)
    assert delegation.startswith("dlg_")
    assert len(delegation) == 26
    assert all(c in "0123456789abcdef" for c in delegation[4:])
    assert issuer_stream_id(issuer).startswith("iss_")
    assert len(issuer_stream_id(issuer)) == 26


def test_different_subjects_get_different_delegations() -> None:
    a = delegation_id_for("https://idp.example", "alice", "https://us.example")
    b = delegation_id_for("https://idp.example", "bob", "https://us.example")
    assert a != b
