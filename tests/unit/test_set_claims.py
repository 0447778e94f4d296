"""The pure SET checks of V9 (service/providers/set_claims.py): typ, aud, the time rules, the
required claims and `events`, each with the code the contract gives it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.providers.set_claims import (
    SET_MAX_AGE,
    SetRefused,
    VerifiedSet,
    check_set,
    read_set,
)
from tests.support.idp import REVOKED_EVENT, IdentityProvider

OURS = "https://auth.example.com"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
AT = int(NOW.timestamp())
IDP = IdentityProvider(issuer="https://provider.example")
ISSUER = IDP.trusted()


def claims(**changes: Any) -> dict[str, Any]:
    """A valid SET at NOW (the contract's shape: no exp); a value of None removes the claim."""
    base = IDP.logout_claims(aud=OURS, now=NOW, sub="user-7")
    merged = {**base, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def token(payload: dict[str, Any], typ: str = "secevent+jwt", **header: Any) -> str:
    full = IDP.header(typ, changes=header, remove=[k for k, v in header.items() if v is None])
    return IDP.sign(payload, header=full)


def check(raw: str, now: datetime = NOW) -> VerifiedSet:
    return check_set(read_set(raw), issuer=ISSUER, audience=OURS, now=now)


def code(raw: str, now: datetime = NOW) -> str:
    with pytest.raises(SetRefused) as refused:
        check(raw, now)
    return refused.value.code


def test_a_valid_set() -> None:
    """The contract's SET (no exp) passes; its jti is kept 300 s past iat plus the skew."""
    got = check(token(claims(jti="j-1")))
    assert (got.issuer, got.subject, got.jti, got.audience) == (IDP.issuer, "user-7", "j-1", OURS)
    assert got.issued_at == NOW
    assert got.remember_until == NOW + timedelta(seconds=SET_MAX_AGE + 60)
    assert got.carries(REVOKED_EVENT)
    assert not got.carries("https://example.com/other")


def test_exp_shortens_the_memory() -> None:
    """With an exp before iat + 300 s, the jti is kept until exp plus the skew."""
    got = check(token(claims(exp=AT + 120)))
    assert got.remember_until == NOW + timedelta(seconds=180)


@pytest.mark.parametrize("typ", ["secevent+jwt", "SECEVENT+JWT", "application/secevent+jwt"])
def test_typ_forms(typ: str) -> None:
    """secevent+jwt in any case, `application/` tolerated."""
    assert check(token(claims(), typ=typ)).subject == "user-7"


@pytest.mark.parametrize("typ", ["logout+jwt", "JWT", "oauth-id-jag+jwt", "secevent"])
def test_other_types_fail_authentication(typ: str) -> None:
    """A logout token or any other type at V9 is `authentication_failed` (case 30)."""
    assert code(token(claims(), typ=typ)) == "authentication_failed"


def test_no_typ_fails_authentication() -> None:
    """A header without typ is `authentication_failed` too."""
    header = IDP.header("secevent+jwt", remove=["typ"])
    assert code(IDP.sign(claims(), header=header)) == "authentication_failed"


def test_header_shape_and_alg() -> None:
    """A broken JWS is `invalid_request`; `none` and HMAC algs are `authentication_failed`."""
    assert code("a.b") == "invalid_request"
    assert code(token(claims(), kid=None)) == "invalid_request"
    assert code(IDP.unsigned(claims(), typ="secevent+jwt")) == "authentication_failed"
    assert code(IDP.hmac_with_public_key(claims(), typ="secevent+jwt")) == "authentication_failed"


@pytest.mark.parametrize(
    "aud", [OURS, OURS + "/", [OURS], ["https://other.example", OURS + "/"]]
)  # fmt: skip
def test_audience_forms(aud: Any) -> None:
    """aud a string or an array holding our issuer, one trailing slash ignored (O-K)."""
    assert check(token(claims(aud=aud))).subject == "user-7"


@pytest.mark.parametrize(
    "aud", [None, "https://other.example", OURS + "//", [], ["https://other.example"], 7]
)  # fmt: skip
def test_wrong_audience_fails_authentication(aud: Any) -> None:
    """Any other aud is `authentication_failed`."""
    assert code(token(claims(aud=aud))) == "authentication_failed"


@pytest.mark.parametrize(
    "changes",
    [
        {"iat": None},
        {"iat": "now"},
        {"iat": True},
        {"iat": -1},
        {"iat": AT + 61},
        {"iat": AT - SET_MAX_AGE - 1},
        {"nbf": AT + 61},
        {"exp": AT - 60},
        {"exp": AT + 601},
        {"exp": "later"},
    ],
)
def test_time_rules_fail_authentication(changes: dict[str, Any]) -> None:
    """No iat, one in the future or over 300 s old (whatever exp says), a passed exp or one
    more than 600 s after iat: `authentication_failed`."""
    assert code(token(claims(**changes))) == "authentication_failed"


def test_time_boundaries_pass() -> None:
    """iat 60 s ahead or exactly 300 s old, exp 59 s past, a lifetime of 600 s: accepted."""
    for changes in (
        {"iat": AT + 60},
        {"iat": AT - SET_MAX_AGE},
        {"iat": AT - 200, "exp": AT - 59},
        {"exp": AT + 600},
        {"nbf": AT + 60},
    ):
        assert check(token(claims(**changes))).subject == "user-7"


@pytest.mark.parametrize(
    "changes",
    [
        {"jti": None},
        {"jti": ""},
        {"jti": 5},
        {"sub": None},
        {"sub": ""},
        {"sub": {"format": "opaque", "id": "x"}},
        {"events": None},
        {"events": {}},
        {"events": []},
        {"events": "revoked"},
        {"events": {REVOKED_EVENT: True}},
        {"events": {REVOKED_EVENT: {}, "https://x.example": []}},
    ],
)
def test_malformed_claims_are_invalid_request(changes: dict[str, Any]) -> None:
    """jti or sub missing, or events not a non-empty object of objects: `invalid_request`."""
    assert code(token(claims(**changes))) == "invalid_request"


def test_unknown_events_pass_the_checks() -> None:
    """A SET with only unknown event URIs is well formed (the caller ignores it, case 31)."""
    got = check(token(claims(events={"https://x.example/e": {"k": 1}})))
    assert not got.carries(REVOKED_EVENT)
    assert dict(got.events) == {"https://x.example/e": {"k": 1}}


def test_authentication_is_judged_before_the_form() -> None:
    """A wrong typ or aud wins over a missing jti or sub."""
    assert code(token(claims(jti=None), typ="logout+jwt")) == "authentication_failed"
    assert code(token(claims(sub=None, aud="https://x.example"))) == "authentication_failed"
    assert code(token(claims(events={}, iat=AT + 3600))) == "authentication_failed"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["iss", "sub", "aud", "jti", "iat", "exp", "nbf", "events"]),
       value=JSON)  # fmt: skip
def test_any_claim_value_is_a_coded_refusal_or_a_pass(name: str, value: Any) -> None:
    """Whatever one claim holds, the checks pass or raise SetRefused with one of the two codes."""
    try:
        got: VerifiedSet | SetRefused = check(token({**claims(), name: value}))
    except SetRefused as refused:
        got = refused
    if isinstance(got, SetRefused):
        timed = name in {"aud", "iat", "exp", "nbf"}
        assert got.code == ("authentication_failed" if timed else "invalid_request")
    else:
        assert got.subject == value or name != "sub"
