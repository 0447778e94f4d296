"""The revocation message (compact JWS) and a subscriber's local state, without services."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.crypto.signing import public_jwk
from subscriber.client import RevocationSubscriber, SubscriberConfig
from subscriber.state import State, WrongFeed
from subscriber.wire import (
    BadMessage,
    BadSignature,
    Revocation,
    UnknownKey,
    key_id,
    public_keys,
    sign,
    to_json,
    token_prefix,
    verify,
)

KEY = Ed25519PrivateKey.generate()
JWK = public_jwk(KEY)
KEYS = public_keys({"keys": [JWK, {"kty": "RSA", "kid": "rsa", "n": "x", "e": "AQAB"}]})
TOKEN = "ak_live_example_token_value_0123456789"
HASH = hashlib.sha256(TOKEN.encode()).hexdigest()
REPO = Path(__file__).resolve().parents[2]
ACCESS_TOKEN_HEADER = json.dumps({"alg": "EdDSA", "kid": "k", "typ": "at+jwt"}).encode()


def claims(**changes: object) -> Revocation:
    fields: dict[str, object] = {
        "iss": "https://auth.example.test", "tenant": "default", "position": 42,
        "previous_position": 17, "event_id": "0190f0f0-0000-7000-8000-000000000001",
        "credential_id": "cred_abc", "credential_kind": "api_key",
        "token_hash_prefix": HASH[:16], "registration_id": "reg_1", "user_id": None,
        "reason": "revoked:operator", "effective_at": datetime(2026, 11, 28, 12, tzinfo=UTC),
        "iat": 1_790_000_000, **changes,
    }  # fmt: skip
    return Revocation(**fields)  # type: ignore[arg-type]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_signed_message_verifies_to_the_same_claims_with_the_jwks_alone() -> None:
    """sign -> verify round-trips, the header names the kid, and PyJWT accepts it as well."""
    message = sign(claims(), KEY, JWK["kid"])
    assert verify(message, KEYS) == claims()
    assert verify(message.encode(), KEYS) == claims()
    assert key_id(message) == JWK["kid"]
    header = jwt.get_unverified_header(message)
    assert header == {"alg": "EdDSA", "kid": JWK["kid"], "typ": "authledger-revocation+jwt"}
    decoded = jwt.decode(message, KEY.public_key(), algorithms=["EdDSA"])
    assert (decoded["credential_id"], "user_id" in decoded) == ("cred_abc", False)
    assert to_json(claims())["user_id"] is None


def test_a_tampered_message_is_refused() -> None:
    """Another payload under the same signature, or the same kid from another key: refused."""
    head, _, signature = sign(claims(), KEY, JWK["kid"]).split(".")
    forged = _b64(json.dumps({**to_json(claims()), "credential_id": "cred_other",
                              "effective_at": "2026-11-28T12:00:00Z"}).encode())  # fmt: skip
    with pytest.raises(BadSignature):
        verify(f"{head}.{forged}.{signature}", KEYS)
    impostor = sign(claims(credential_id="cred_other"), Ed25519PrivateKey.generate(), JWK["kid"])
    with pytest.raises(BadSignature):
        verify(impostor, KEYS)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not a jws", BadMessage),
        ("a.b", BadMessage),
        (f"{_b64(b'{}')}.e30.sig", BadMessage),
        (f"{_b64(ACCESS_TOKEN_HEADER)}.e30.sig", BadMessage),
        (sign(claims(), Ed25519PrivateKey.generate(), "someone-else"), UnknownKey),
    ],
)
def test_malformed_or_foreign_messages_are_refused(message: str, error: type[Exception]) -> None:
    """Not a JWS, no header, an access token's typ, an unknown kid: each its own error."""
    with pytest.raises(error):
        verify(message, KEYS)


def test_an_access_token_verifier_refuses_a_revocation_message() -> None:
    """A revocation message lacks `aud`, `sub` and `exp`: it cannot pass as an access token."""
    message = sign(claims(), KEY, JWK["kid"])
    with pytest.raises(jwt.MissingRequiredClaimError):
        jwt.decode(message, KEY.public_key(), algorithms=["EdDSA"], audience="x",
                   options={"require": ["exp", "aud", "sub"]})  # fmt: skip


def test_state_survives_reopening_and_answers_is_revoked(tmp_path: Path) -> None:
    """What one State wrote (set and checkpoint) the next one reads back; `is_revoked`
    matches the token, its full hash, its prefix, an access token's jti, nothing else."""
    path = tmp_path / "state.db"
    access = claims(credential_id="cred_at", credential_kind="access_token", jti="cred_at",
                    token_hash_prefix="0" * 16, position=43)  # fmt: skip
    state = State(path, "S subject http://svc")
    assert state.apply([claims(), access], 43, 7) == [claims(), access]
    assert state.apply([claims()], 43, 8) == []  # already held
    state.close()
    config = SubscriberConfig(nats_url="nats://x:4222", service_url="http://svc", stream="S",
                              subject_prefix="p", state_path=path)  # fmt: skip
    with pytest.raises(WrongFeed):
        RevocationSubscriber(config)
    reopened = State(path, "S subject http://svc")
    assert (reopened.checkpoint.position, reopened.checkpoint.seq, len(reopened)) == (43, 8, 2)
    reopened.close()
    follower = RevocationSubscriber(
        SubscriberConfig(
            nats_url="nats://x:4222",
            service_url="http://svc/",
            stream="S",
            subject_prefix="p",
            state_path=tmp_path / "other.db",
        )
    )
    assert not follower.is_revoked(TOKEN)
    state = State(tmp_path / "other.db", follower.config.feed)
    state.apply([claims(), access], 43, 1)
    state.close()
    follower = RevocationSubscriber(follower.config)
    jwt_like = f"e30.{_b64(json.dumps({'jti': 'cred_at'}).encode())}.sig"
    for revoked in (TOKEN, HASH, HASH[:16], HASH.upper(), jwt_like):
        assert follower.is_revoked(revoked), revoked
    for live in ("another-token", hashlib.sha256(b"x").hexdigest(), "e30.e30.sig", "a.b.c"):
        assert not follower.is_revoked(live), live
    assert follower.is_revoked_credential("cred_abc")
    assert token_prefix(TOKEN) == HASH[:16]


def test_the_subscriber_package_imports_nothing_of_the_service() -> None:
    """A resource server importing the client pulls in no service code (nor asyncpg or
    Litestar): the package stands on its own."""
    code = ("import sys, subscriber, subscriber.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'events', 'projections', 'service', 'workers', 'asyncpg', 'litestar'}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == "[]"
