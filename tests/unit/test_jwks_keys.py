"""Which JWKs the cache keeps, which algorithms a key verifies, and how long a JWKS stays fresh:
the pure parts of service/providers/jwks.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import get_default_algorithms

from service.providers.jwks import (
    KeyUnavailable,
    VerificationKey,
    cache_lifetime,
    read_jwk,
    read_jwks,
)
from tests.support.idp import ProviderKey, b64url, thumbprint

FLOOR, CEILING = timedelta(minutes=10), timedelta(hours=24)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_published_signing_key_is_read(alg: str) -> None:
    """A public signing JWK of each allowed algorithm becomes a key that verifies its alg."""
    key = ProviderKey.generate(alg)
    read = read_jwk(key.public_jwk)
    assert read is not None
    assert (read.kid, read.alg) == (key.kid, alg)
    assert read.verify(alg, b"message", key.sign(b"message"))
    assert not read.verify(alg, b"other message", key.sign(b"message"))


@pytest.mark.parametrize(
    "changes",
    [
        {"use": "enc"},
        {"key_ops": ["encrypt"]},
        {"key_ops": "verify"},
        {"alg": "HS256"},
        {"alg": "ES384"},
        {"alg": "RS256"},  # an EC key claiming an RSA alg
        {"kid": None},
        {"kid": ""},
        {"kid": 7},
        {"kty": "oct"},
        {"kty": None},
        {"crv": "P-384"},
        {"x": "not base64url!"},
        {"x": b64url(b"\x01" * 31)},
        {"x": 7},
        {"d": b64url(b"\x01" * 32)},  # private material has no place in a JWKS
    ],
)
def test_unusable_jwk_is_skipped(changes: dict[str, Any]) -> None:
    """Keys not for signatures, of an unusable type or alg, malformed, or private: skipped."""
    jwk = ProviderKey.generate("ES256").jwk(**changes)
    assert read_jwk(jwk) is None


def test_key_ops_with_verify_and_missing_use_and_alg_are_accepted() -> None:
    """`use` and `alg` are optional; key_ops, when present, must allow verify."""
    key = ProviderKey.generate("ES256")
    read = read_jwk(key.jwk(use=None, alg=None, key_ops=["verify"]))
    assert read is not None
    assert read.alg is None
    assert read.accepts("ES256")


def test_point_not_on_the_curve_is_skipped() -> None:
    """An EC JWK whose (x, y) is not a P-256 point is skipped, not trusted."""
    key = ProviderKey.generate("ES256")
    assert read_jwk(key.jwk(y=b64url(b"\x00" * 31 + b"\x07"))) is None


def test_rsa_key_under_2048_bits_is_skipped() -> None:
    """Short RSA keys are refused."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 on purpose
    small = weak.public_key()
    jwk = get_default_algorithms()["RS256"].to_jwk(small, as_dict=True)
    assert read_jwk({**jwk, "kid": "small"}) is None


def test_rsa_key_without_alg_serves_rs256_and_ps256_but_a_pinned_alg_only_itself() -> None:
    """A JWK's own alg narrows what it verifies; without one, the key type decides."""
    key = ProviderKey.generate("RS256")
    free = read_jwk(key.jwk(alg=None))
    pinned = read_jwk(key.public_jwk)
    assert free is not None
    assert pinned is not None
    assert (free.accepts("RS256"), free.accepts("PS256"), free.accepts("ES256")) == (
        True,
        True,
        False,
    )
    assert (pinned.accepts("RS256"), pinned.accepts("PS256")) == (True, False)


@pytest.mark.parametrize("alg", ["HS256", "none", "ES384"])
def test_key_never_accepts_an_alg_outside_the_allow_list(alg: str) -> None:
    """Whatever the key, HMAC and none are never accepted."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key = VerificationKey(kid="k", public_key=public)
    assert not key.accepts(alg)
    assert not key.verify(alg, b"m", b"")


@pytest.mark.parametrize("signature", [b"", b"\x00" * 64, b"\x01" * 63, b"\xff" * 65])
def test_malformed_signature_does_not_verify(signature: bytes) -> None:
    """Wrong-length or zero ECDSA signatures are a plain False, not an exception."""
    key = read_jwk(ProviderKey.generate("ES256").public_jwk)
    assert key is not None
    assert not key.verify("ES256", b"message", signature)


def test_jwks_keeps_the_first_key_of_a_repeated_kid_and_skips_the_rest() -> None:
    """Usable keys by kid; a duplicate kid keeps the first; unusable entries are dropped."""
    first, second = ProviderKey.generate("ES256"), ProviderKey.generate("ES256")
    document = {
        "keys": [
            "not a key",
            second.jwk(use="enc"),
            first.public_jwk,
            second.jwk(kid=first.kid),
            second.public_jwk,
        ]
    }
    keys = read_jwks(document)
    assert set(keys) == {first.kid, second.kid}
    assert keys[first.kid].verify("ES256", b"m", first.sign(b"m"))


@pytest.mark.parametrize("document", [[], "keys", {"keys": {}}, {"keys": None}, {}])
def test_document_that_is_not_a_jwk_set_is_unavailable(document: object) -> None:
    """A JWKS must be an object with a `keys` array."""
    with pytest.raises(KeyUnavailable):
        read_jwks(document)


def test_kid_is_the_rfc_7638_thumbprint() -> None:
    """The test provider names keys as the reference provider does (RFC 7638 §3.1 example)."""
    example = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
            "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4"
            "QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbO"
            "pbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
            "Cur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
    }
    assert thumbprint(example) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("header", "lifetime"),
    [
        (None, FLOOR),
        ("", FLOOR),
        ("max-age=5", FLOOR),
        ("public, max-age=3600", timedelta(hours=1)),
        ('max-age="7200", must-revalidate', timedelta(hours=2)),
        ("MAX-AGE=900", timedelta(minutes=15)),
        ("max-age=10000000", CEILING),
        ("max-age=99999999999999999999", FLOOR),
        ("max-age=-5", FLOOR),
        ("max-age=abc", FLOOR),
        ("no-store", FLOOR),
    ],
)
def test_cache_control_max_age_is_clamped(header: str | None, lifetime: timedelta) -> None:
    """max-age is honoured between the floor (10 min) and ceiling (24 h); else the floor."""
    assert cache_lifetime(header, FLOOR, CEILING) == lifetime
