"""The ID token check of OIDC sign-in (service/providers/id_token.py): each rule refuses on
its own and names itself, and no payload makes it fail any other way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.providers.id_token import (
    IdTokenClaims,
    IdTokenRefused,
    check_id_token,
    read_id_token,
)
from tests.support.idp import IdentityProvider, b64url, compact

ISSUER = "https://idp.example"
CLIENT = "authledger-client"
NONCE = "n-0S6_WzA2Mj"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
IDP = IdentityProvider(issuer=ISSUER, alg="RS256")


def claims(**changes: Any) -> dict[str, Any]:
    """Valid ID-token claims at NOW; a value of None removes the claim."""
    issued = int(NOW.timestamp())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT,
        "exp": issued + 300,
        "iat": issued,
        "nonce": NONCE,
        "email": "ana@example.net",
        "email_verified": True,
    }
    merged = {**base, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def token(payload: dict[str, Any], **header: Any) -> str:
    full = {"alg": IDP.signing_key.alg, "kid": IDP.signing_key.kid, **header}
    return IDP.sign(payload, header={k: v for k, v in full.items() if v is not None})


def check(raw: str, now: datetime = NOW) -> IdTokenClaims:
    return check_id_token(read_id_token(raw), issuer=ISSUER, client_id=CLIENT, nonce=NONCE, now=now)


def outcome(raw: str) -> IdTokenClaims | IdTokenRefused:
    try:
        return check(raw)
    except IdTokenRefused as refused:
        return refused


def failed(raw: str, now: datetime = NOW) -> str:
    with pytest.raises(IdTokenRefused) as refused:
        check(raw, now)
    return refused.value.code


def test_a_valid_id_token() -> None:
    """A token right in every way gives the subject, the verified address and its times."""
    got = check(token(claims(auth_time=int(NOW.timestamp()) - 30)))
    assert (got.issuer, got.subject, got.email) == (ISSUER, "248289761001", "ana@example.net")
    assert got.issued_at == NOW
    assert got.expires_at == NOW + timedelta(minutes=5)
    assert got.auth_time == NOW - timedelta(seconds=30)
    assert check(token(claims())).auth_time is None


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt"])
def test_no_typ_is_demanded(typ: str | None) -> None:
    """Providers send no typ or `JWT`: the typ is not judged."""
    assert check(token(claims(), typ=typ)).subject == "248289761001"


@pytest.mark.parametrize(
    ("aud", "azp"),
    [(CLIENT, None), ([CLIENT], None), ([CLIENT, "other"], CLIENT), (CLIENT, CLIENT)],
)
def test_audience_forms_accepted(aud: Any, azp: str | None) -> None:
    """Our client id as aud, or in an array; several audiences need azp = our client id."""
    assert check(token(claims(aud=aud, azp=azp))).email == "ana@example.net"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"iss": ISSUER + "/"}, "iss"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"iss": None}, "iss"),
        ({"aud": "other"}, "aud"),
        ({"aud": ["other"]}, "aud"),
        ({"aud": None}, "aud"),
        ({"aud": [CLIENT, "other"]}, "azp"),
        ({"aud": [CLIENT, "other"], "azp": "other"}, "azp"),
        ({"azp": "other"}, "azp"),
        ({"exp": None}, "exp"),
        ({"exp": "tomorrow"}, "exp"),
        ({"exp": int(NOW.timestamp()) - 60}, "exp"),
        ({"iat": None}, "iat"),
        ({"iat": int(NOW.timestamp()) + 61}, "iat"),
        ({"iat": True}, "iat"),
        ({"auth_time": "yesterday"}, "auth_time"),
        ({"nonce": "another"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"nonce": 42}, "nonce"),
        ({"sub": None}, "sub"),
        ({"sub": ""}, "sub"),
        ({"email": None}, "email"),
        ({"email": ""}, "email"),
        ({"email_verified": False}, "email_verified"),
        ({"email_verified": "true"}, "email_verified"),
        ({"email_verified": 1}, "email_verified"),
        ({"email_verified": None}, "email_verified"),
    ],
)
def test_each_rule_refuses(changes: dict[str, Any], expected: str) -> None:
    """One wrong claim is one refusal, naming its check."""
    assert failed(token(claims(**changes))) == expected


def test_skew_is_sixty_seconds() -> None:
    """exp 59 s past and iat 60 s ahead still pass."""
    issued = int(NOW.timestamp())
    assert check(token(claims(exp=issued - 59))).subject
    assert check(token(claims(iat=issued + 60))).subject


def test_header_refusals() -> None:
    """`none`, HMAC and unknown algs are `alg`; a broken JWS or no kid is `malformed`."""
    assert failed(token(claims(), alg="none")) == "alg"
    assert failed(IDP.hmac_with_public_key(claims(), typ="JWT")) == "alg"
    assert failed(token(claims(), alg="HS256")) == "alg"
    assert failed(token(claims(), kid=None)) == "malformed"
    assert failed("not.a.jwt") == "malformed"
    assert failed(compact({"alg": "RS256", "kid": "k"}, claims(), b"")[:-1] + "!") == "malformed"
    assert failed(f"{b64url(b'[]')}.{b64url(b'{}')}.") == "malformed"


def test_the_first_failed_check_is_named() -> None:
    """Checks run in the documented order: iss before aud before times before nonce."""
    assert failed(token(claims(iss="x", aud="y", nonce="z"))) == "iss"
    assert failed(token(claims(aud="y", exp=1, nonce="z"))) == "aud"
    assert failed(token(claims(exp=1, nonce="z"))) == "exp"
    assert failed(token(claims(nonce="z", email_verified=False))) == "nonce"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from([*sorted(claims()), "azp", "auth_time"]), value=JSON)
def test_any_claim_value_is_a_refusal_or_a_pass(name: str, value: Any) -> None:
    """Whatever one claim holds, the check passes or raises IdTokenRefused, nothing else."""
    got = outcome(token({**claims(), name: value}))
    if isinstance(got, IdTokenRefused):
        assert got.code in ({name, "azp"} if name == "aud" else {name})
    else:
        assert value is True or name != "email_verified"
        assert value == ISSUER or name != "iss"
        assert got.subject == claims().get("sub") or name == "sub"
