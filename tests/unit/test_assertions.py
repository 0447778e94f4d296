"""The v0.6 identity assertion (service/crypto/assertions.py): what it carries, and every rule
it is refused by, on a key ring held in memory."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from service.crypto.assertions import (
    ASSERTION_TYPE,
    MAX_ASSERTION_BYTES,
    AssertionRefused,
    UnknownAssertionKey,
    issue_assertion,
    verify_assertion,
)
from service.crypto.jws import AccessTokenError, sign_with
from service.crypto.signing import KeyRing, NoActiveKey, SigningKey, new_signing_key

SECRET = "a" * 48
ISSUER = "https://auth.example"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=1)
KEY = new_signing_key(T0)


def ring_with(*keys: SigningKey) -> KeyRing:
    ring = KeyRing(SECRET)
    for key in keys:
        ring.hold(key)
    return ring


RING = ring_with(KEY)


def claims(**changes: Any) -> dict[str, Any]:
    """Valid assertion claims at T0; a value of None removes the claim."""
    issued = int(T0.timestamp())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": "reg_abc",
        "jti": "asr_1",
        "iat": issued,
        "exp": issued + 3600,
        "gen": 0,
    }
    merged = {**base, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def signed(payload: dict[str, Any], *, typ: str = ASSERTION_TYPE, key: SigningKey = KEY) -> str:
    return sign_with(key, payload, typ=typ)


def verify(token: str, now: datetime = T0, ring: KeyRing = RING) -> Any:
    return verify_assertion(ring, token, issuer=ISSUER, now=now)


def refused(token: str, now: datetime = T0, ring: KeyRing = RING) -> str:
    with pytest.raises(AssertionRefused) as caught:
        verify(token, now, ring)
    return str(caught.value)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_issue_then_verify_round_trip() -> None:
    """An issued assertion verifies to what went in, and its exp is the instant returned."""
    token, expires_at = issue_assertion(
        RING, issuer=ISSUER, sub="reg_abc", gen=1, now=T0, ttl=TTL,
        email="ana@example.net", email_verified=True, amr=("pwd", "mfa"),
    )  # fmt: skip
    got = verify(token)
    assert (got.subject, got.gen, got.issuer) == ("reg_abc", 1, ISSUER)
    assert (got.email, got.email_verified, got.amr) == ("ana@example.net", True, ("pwd", "mfa"))
    assert got.issued_at == T0
    assert got.expires_at == expires_at == T0 + TTL
    assert got.jti.startswith("asr_")
    assert len(got.jti) == 26


def test_header_and_bare_claims() -> None:
    """The header names the ID-JAG type, EdDSA and the ring's kid; no email or scope by default."""
    token, _ = issue_assertion(RING, issuer=ISSUER, sub="reg_x", gen=0, now=T0, ttl=TTL)
    header = jwt.get_unverified_header(token)
    assert header == {"typ": ASSERTION_TYPE, "alg": "EdDSA", "kid": KEY.kid}
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert set(payload) == {"iss", "aud", "sub", "jti", "iat", "exp", "gen"}
    got = verify(token)
    assert (got.email, got.email_verified, got.amr) == (None, None, ())


def test_two_assertions_differ_by_jti() -> None:
    """Each assertion has its own jti, so two minted at once are two tokens."""
    one, _ = issue_assertion(RING, issuer=ISSUER, sub="reg_x", gen=0, now=T0, ttl=TTL)
    two, _ = issue_assertion(RING, issuer=ISSUER, sub="reg_x", gen=0, now=T0, ttl=TTL)
    assert one != two
    assert verify(one).jti != verify(two).jti


@pytest.mark.parametrize("gen", [-1, True, 1.0, "0"])
def test_issue_refuses_a_bad_generation(gen: Any) -> None:
    """Minting takes only an integer generation >= 0, and a subject."""
    with pytest.raises(ValueError, match="generation"):
        issue_assertion(RING, issuer=ISSUER, sub="reg_x", gen=gen, now=T0, ttl=TTL)
    with pytest.raises(ValueError, match="subject"):
        issue_assertion(RING, issuer=ISSUER, sub="", gen=0, now=T0, ttl=TTL)


def test_issue_needs_an_active_key() -> None:
    """A ring without an active key cannot mint."""
    retired = SigningKey(KEY.kid, KEY.alg, KEY.private_key, KEY.public_jwk, T0, T0, T0)
    with pytest.raises(NoActiveKey):
        issue_assertion(ring_with(retired), issuer=ISSUER, sub="reg_x", gen=0, now=T0, ttl=TTL)


@pytest.mark.parametrize(
    "typ",
    [
        "oauth-id-jag+jwt",
        "OAUTH-ID-JAG+JWT",
        "application/oauth-id-jag+jwt",
        "Application/Oauth-Id-Jag+JWT",
    ],
)
def test_typ_is_read_case_insensitively_with_application(typ: str) -> None:
    """The typ matches in any case, with or without `application/`."""
    assert verify(signed(claims(), typ=typ)).subject == "reg_abc"


@pytest.mark.parametrize("typ", ["at+jwt", "JWT", "jwt", "oauth-id-jag", "x/oauth-id-jag+jwt"])
def test_other_types_are_refused(typ: str) -> None:
    """An access token, a plain JWT or a near miss is no assertion."""
    assert "type" in refused(signed(claims(), typ=typ))


def test_an_assertion_is_no_access_token() -> None:
    """The ring's access-token check refuses an assertion (its typ), and the reverse holds."""
    token, _ = issue_assertion(RING, issuer=ISSUER, sub="reg_x", gen=0, now=T0, ttl=TTL)
    with pytest.raises(AccessTokenError, match="type"):
        RING.verify_access_token(token, issuer=ISSUER, audience=ISSUER, now=T0)
    access = RING.issue_access_token(
        issuer=ISSUER, audience=ISSUER, subject="reg_x", client_id="reg_x", scopes=("api.read",),
        jti="j", now=T0, ttl=TTL,
    )  # fmt: skip
    assert "type" in refused(access)


def test_header_without_typ_or_kid_is_refused() -> None:
    """No typ, or no kid, is a refusal."""
    payload = b64(json.dumps(claims()).encode())
    for header in ({"alg": "EdDSA", "kid": KEY.kid}, {"alg": "EdDSA", "typ": ASSERTION_TYPE}):
        unsigned = f"{b64(json.dumps(header).encode())}.{payload}"
        token = f"{unsigned}.{b64(KEY.private_key.sign(unsigned.encode()))}"
        refused(token)


def test_unknown_kid_is_its_own_refusal() -> None:
    """Another ring's key (another tenant, or a rotation not loaded yet) names an unknown kid."""
    stranger = new_signing_key(T0)
    with pytest.raises(UnknownAssertionKey):
        verify(signed(claims(), key=stranger))
    assert verify(signed(claims(), key=stranger), ring=ring_with(KEY, stranger)).gen == 0


def test_alg_must_be_the_keys() -> None:
    """A token whose header names another alg than the key's is refused, even if it verifies
    under that alg with some other key."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims(), ec_key, algorithm="ES256",
                       headers={"typ": ASSERTION_TYPE, "kid": KEY.kid})  # fmt: skip
    assert "algorithm" in refused(token)
    none = f"{b64(json.dumps({'typ': ASSERTION_TYPE, 'alg': 'none', 'kid': KEY.kid}).encode())}"
    refused(f"{none}.{b64(json.dumps(claims()).encode())}.")


def test_signature_of_another_key_under_our_kid_is_refused() -> None:
    """A stranger's Ed25519 signature under our kid does not verify."""
    stranger = new_signing_key(T0)
    forged = SigningKey(KEY.kid, "EdDSA", stranger.private_key, KEY.public_jwk, T0, T0, None)
    assert "InvalidSignature" in refused(signed(claims(), key=forged))


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"iss": "https://other.example"}, "Issuer"),
        ({"iss": None}, "MissingRequiredClaim"),
        ({"aud": "https://other.example"}, "Audience"),
        ({"aud": None}, "MissingRequiredClaim"),
        ({"sub": None}, "MissingRequiredClaim"),
        ({"sub": ""}, "sub"),
        ({"jti": None}, "MissingRequiredClaim"),
        ({"jti": ""}, "jti"),
        ({"gen": None}, "MissingRequiredClaim"),
        ({"gen": -1}, "gen"),
        ({"gen": 1.0}, "gen"),
        ({"gen": True}, "gen"),
        ({"gen": "1"}, "gen"),
        ({"iat": None}, "MissingRequiredClaim"),
        ({"exp": None}, "MissingRequiredClaim"),
        ({"exp": "soon"}, "not a number"),
        ({"email": ""}, "email"),
        ({"email_verified": "true"}, "email_verified"),
        ({"amr": "pwd"}, "amr"),
    ],
)
def test_claim_rules(changes: dict[str, Any], why: str) -> None:
    """Each claim rule refuses on its own, naming what failed."""
    assert why in refused(signed(claims(**changes)))


def test_times_have_sixty_seconds_of_skew() -> None:
    """exp may be up to 59 s past and iat up to 60 s ahead; a second more is refused."""
    exp = T0 + timedelta(hours=1)
    token = signed(claims())
    assert verify(token, exp + timedelta(seconds=59)).subject == "reg_abc"
    assert "expired" in refused(token, exp + timedelta(seconds=60))
    ahead = signed(claims(iat=int(T0.timestamp()) + 60))
    assert verify(ahead).subject == "reg_abc"
    assert "future" in refused(signed(claims(iat=int(T0.timestamp()) + 61)))


def test_size_limit() -> None:
    """A token over 8 KiB is refused before anything is decoded; under it the same claims pass."""
    room = MAX_ASSERTION_BYTES - len(signed(claims(amr=[""])))
    padding = "x" * (room * 3 // 4 - 3)
    small = signed(claims(amr=[padding]))
    assert MAX_ASSERTION_BYTES - 8 < len(small) <= MAX_ASSERTION_BYTES
    assert verify(small).amr == (padding,)
    big = signed(claims(amr=[padding + "yyyyyy"]))
    assert len(big) > MAX_ASSERTION_BYTES
    assert "at most" in refused(big)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "é.é.é", "....", None, 42])
def test_garbage_is_refused(token: Any) -> None:
    """Anything that is not a compact JWS is an AssertionRefused, never another exception."""
    refused(token)


def test_non_canonical_base64_is_refused() -> None:
    """The signature's last character carries spare bits: another spelling of the same bytes is
    refused, so no second string is the same valid assertion."""
    token = signed(claims())
    head, _, signature = token.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = signature[:-1] + alphabet[alphabet.index(signature[-1]) ^ 1]
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(signature + "==")
    assert "malformed" in refused(f"{head}.{twin}")
    assert "malformed" in refused(f"{token}==")


TOKEN, _ = issue_assertion(RING, issuer=ISSUER, sub="reg_abc", gen=3, now=T0, ttl=TTL)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(TOKEN) - 1), replacement=st.characters(codec="utf-8"))
def test_any_single_character_tamper_is_refused(position: int, replacement: str) -> None:
    """Replacing any one character of a valid assertion by any other makes it refused."""
    if replacement == TOKEN[position]:
        replacement = "A" if TOKEN[position] != "A" else "B"
    tampered = TOKEN[:position] + replacement + TOKEN[position + 1 :]
    with pytest.raises(AssertionRefused):
        verify(tampered)


@settings(max_examples=100, deadline=None)
@given(position=st.integers(0, len(TOKEN) - 1), bit=st.integers(0, 7))
def test_any_single_bit_flip_is_refused(position: int, bit: int) -> None:
    """Flipping any one bit of the token's bytes makes it refused (or not even text)."""
    raw = bytearray(TOKEN.encode())
    raw[position] ^= 1 << bit
    text = raw.decode("utf-8", errors="surrogateescape")
    with pytest.raises(AssertionRefused):
        verify(text)
    assert verify(TOKEN).gen == 3
