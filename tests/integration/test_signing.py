"""Signing keys and RFC 9068 access tokens against a real Postgres (service/crypto/signing.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from service.crypto.jws import AccessTokenError, ExpiredAccessToken, UnknownSigningKey
from service.crypto.signing import KeyRing, NoActiveKey, thumbprint

SECRET = "q" * 48
ISSUER = "https://auth.example"
AUDIENCE = "https://auth.example/api"
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=1)


def issue(ring: KeyRing, now: datetime = T0, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "usr_alice",
        "client_id": "reg_agent",
        "scopes": ("api.read", "api.write"),
        "jti": "at_1",
        "now": now,
        "ttl": TTL,
    }
    return ring.issue_access_token(**{**args, **overrides})


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A compact JWS with any header; `sign(signing_input) -> bytes` or an empty signature."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def verify(ring: KeyRing, token: str, now: datetime = T0) -> dict[str, Any]:
    return ring.verify_access_token(token, issuer=ISSUER, audience=AUDIENCE, now=now)


@pytest.fixture
async def ring(pool: asyncpg.Pool) -> KeyRing:
    created = KeyRing(SECRET)
    await created.ensure_active(pool, T0)
    return created


def test_thumbprint_matches_rfc_8037_example() -> None:
    """The kid computation reproduces the RFC 8037 appendix A.3 thumbprint."""
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


async def test_ensure_active_creates_one_key_once(pool: asyncpg.Pool) -> None:
    """Concurrent ensure_active calls from several rings create exactly one key."""
    rings = [KeyRing(SECRET) for _ in range(4)]
    keys = await asyncio.gather(*(r.ensure_active(pool, T0) for r in rings))
    assert len({k.kid for k in keys}) == 1
    assert await pool.fetchval("SELECT count(*) FROM signing_keys") == 1
    again = await rings[0].ensure_active(pool, T0 + TTL)
    assert again.kid == keys[0].kid
    assert again.alg == "EdDSA"
    assert again.kid == thumbprint(again.public_jwk)


async def test_private_keys_are_stored_wrapped(pool: asyncpg.Pool, ring: KeyRing) -> None:
    """The table holds no raw private key, and another secret cannot load the ring."""
    active = ring.active
    assert active is not None
    raw = active.private_key.private_bytes_raw()
    stored = await pool.fetchval("SELECT private_key FROM signing_keys")
    assert raw not in stored
    with pytest.raises(RuntimeError, match="unwrap"):
        await KeyRing("w" * 48).load(pool)


async def test_jwks_publishes_the_active_public_key(ring: KeyRing) -> None:
    """The JWKS lists the active key as an OKP/Ed25519 JWK with kid, alg and no private part."""
    jwks = ring.jwks(T0, TTL)
    assert len(jwks["keys"]) == 1
    (key,) = jwks["keys"]
    assert ring.active is not None
    assert key["kid"] == ring.active.kid
    assert {key["kty"], key["crv"], key["alg"], key["use"]} == {"OKP", "Ed25519", "EdDSA", "sig"}
    assert "d" not in key


async def test_token_verifies_offline_with_the_jwks(ring: KeyRing) -> None:
    """A resource server holding only the JWKS verifies the token with pyjwt."""
    now = datetime.now(UTC)
    token = issue(ring, now)
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    jwks = jwt.PyJWKSet.from_dict(ring.jwks(now, TTL))
    jwk = jwks[header["kid"]]
    claims = jwt.decode(token, jwk, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "usr_alice"
    assert claims["client_id"] == "reg_agent"
    assert claims["scope"] == "api.read api.write"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] == claims["iat"]


async def test_the_ring_verifies_its_own_tokens(ring: KeyRing) -> None:
    """verify_access_token returns the claims of a good token, within the skew too."""
    token = issue(ring)
    claims = verify(ring, token)
    assert claims["jti"] == "at_1"
    assert claims["iss"] == ISSUER
    assert verify(ring, token, T0 + TTL + timedelta(seconds=59))["jti"] == "at_1"
    assert verify(ring, token, T0 - timedelta(seconds=59))["jti"] == "at_1"


async def test_expired_and_not_yet_valid_tokens_are_refused(ring: KeyRing) -> None:
    """Past exp plus 60 s skew is expired; before iat/nbf minus 60 s is refused."""
    token = issue(ring)
    with pytest.raises(ExpiredAccessToken):
        verify(ring, token, T0 + TTL + timedelta(seconds=61))
    with pytest.raises(AccessTokenError, match="not yet valid"):
        verify(ring, token, T0 - timedelta(seconds=61))


async def test_rotation_keeps_the_old_key_until_its_tokens_expire(
    pool: asyncpg.Pool, ring: KeyRing
) -> None:
    """After rotate the old key signs nothing new, stays in the JWKS while its tokens may be
    valid, and then drops out."""
    old = ring.active
    assert old is not None
    old_token = issue(ring, T0)
    rotated_at = T0 + timedelta(minutes=10)
    new = await ring.rotate(pool, rotated_at)
    assert new.kid != old.kid
    new_token = issue(ring, rotated_at)
    assert jwt.get_unverified_header(new_token)["kid"] == new.kid
    assert verify(ring, old_token, T0 + TTL - timedelta(seconds=1))["jti"] == "at_1"
    still = rotated_at + TTL + timedelta(seconds=59)
    assert {k["kid"] for k in ring.jwks(still, TTL)["keys"]} == {old.kid, new.kid}
    gone = rotated_at + TTL + timedelta(seconds=61)
    assert {k["kid"] for k in ring.jwks(gone, TTL)["keys"]} == {new.kid}
    assert await pool.fetchval("SELECT count(*) FROM signing_keys") == 2
    active = await pool.fetchval("SELECT kid FROM signing_keys WHERE retired_at IS NULL")
    assert active == new.kid


async def test_another_process_picks_up_a_rotation_on_load(
    pool: asyncpg.Pool, ring: KeyRing
) -> None:
    """A ring loaded before a rotation elsewhere reports an unknown kid until it reloads."""
    other = KeyRing(SECRET)
    await other.load(pool)
    await ring.rotate(pool, T0 + timedelta(minutes=1))
    token = issue(ring, T0 + timedelta(minutes=1))
    with pytest.raises(UnknownSigningKey):
        verify(other, token, T0 + timedelta(minutes=2))
    await other.load(pool)
    assert verify(other, token, T0 + timedelta(minutes=2))["sub"] == "usr_alice"


async def test_tampered_tokens_are_refused(ring: KeyRing) -> None:
    """Changing the claims or the signature breaks verification."""
    token = issue(ring, scopes=("api.read",))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "api.read api.write"
    with pytest.raises(AccessTokenError):
        verify(ring, f"{header}.{b64(json.dumps(claims).encode())}.{signature}")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(AccessTokenError):
        verify(ring, f"{header}.{payload}.{flipped}")
    with pytest.raises(AccessTokenError, match="malformed"):
        verify(ring, "not-a-jwt")


async def test_alg_none_and_hs256_with_the_public_key_are_refused(ring: KeyRing) -> None:
    """Algorithm confusion fails: `none`, and HS256 keyed with any form of the public key."""
    active = ring.active
    assert active is not None
    claims = verify(ring, issue(ring))
    header = {"typ": "at+jwt", "kid": active.kid}
    with pytest.raises(AccessTokenError, match="algorithm"):
        verify(ring, forge({**header, "alg": "none"}, claims))
    public = active.private_key.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public.public_bytes_raw(), pem, active.public_jwk["x"].encode()):
        forged = forge(
            {**header, "alg": "HS256"},
            claims,
            lambda data, key=secret: hmac.new(key, data, hashlib.sha256).digest(),
        )
        with pytest.raises(AccessTokenError, match="algorithm"):
            verify(ring, forged)


async def test_header_and_claim_checks(ring: KeyRing) -> None:
    """Wrong typ, missing or unknown kid, wrong audience or issuer, missing claims: refused."""
    active = ring.active
    assert active is not None
    claims = verify(ring, issue(ring))

    def signed(header: dict[str, Any], body: dict[str, Any]) -> str:
        return jwt.encode(body, active.private_key, algorithm="EdDSA", headers=header)

    with pytest.raises(AccessTokenError, match="at\\+jwt"):
        verify(ring, signed({"typ": "JWT", "kid": active.kid}, claims))
    with pytest.raises(AccessTokenError, match="no kid"):
        verify(ring, signed({"typ": "at+jwt"}, claims))
    with pytest.raises(UnknownSigningKey):
        verify(ring, signed({"typ": "at+jwt", "kid": "nope"}, claims))
    assert verify(ring, signed({"typ": "application/at+jwt", "kid": active.kid}, claims))
    with pytest.raises(AccessTokenError, match="MissingRequiredClaim"):
        verify(ring, signed({"typ": "at+jwt", "kid": active.kid}, {**claims, "client_id": None}))
    with pytest.raises(AccessTokenError, match="not a number"):
        verify(ring, signed({"typ": "at+jwt", "kid": active.kid}, {**claims, "exp": "soon"}))
    token = issue(ring)
    with pytest.raises(AccessTokenError, match="Audience"):
        ring.verify_access_token(token, issuer=ISSUER, audience="https://other", now=T0)
    with pytest.raises(AccessTokenError, match="Issuer"):
        ring.verify_access_token(token, issuer="https://other", audience=AUDIENCE, now=T0)


async def test_issuing_without_an_active_key_fails(pool: asyncpg.Pool) -> None:
    """An empty ring cannot issue and publishes an empty JWKS."""
    empty = KeyRing(SECRET)
    await empty.load(pool)
    assert empty.jwks(T0, TTL) == {"keys": []}
    with pytest.raises(NoActiveKey):
        issue(empty)
