"""The revocation message: what `workers/revocation_feed.py` publishes and signs, what
`GET /admin/revocations` returns, and what a resource server verifies.

One message per credential-ending event of the log (`credential.revoked`, `credential.expired`),
on `<prefix>.<tenant>.revocations` of the JetStream stream, with `Nats-Msg-Id` =
`<event id>:revocation` and the log position in the `Authledger-Revocation-Position` header
(deliberately not the relay's `Authledger-Position`, so the relay's tail scan never mistakes a
revocation message for one of its own).

The body is a compact JWS (RFC 7515), nothing else:

    header   {"alg": "EdDSA", "kid": <key id>, "typ": "authledger-revocation+jwt"}
    payload  {"iss", "tenant", "position", "previous_position", "event_id", "credential_id",
              "credential_kind", "token_hash_prefix", "jti", "registration_id", "user_id",
              "reason", "effective_at", "iat"}

signed with the service's active access-token key (Ed25519), so the public JWKS at
`/.well-known/jwks.json` is all a verifier needs. The `typ` and the missing `aud`/`sub`/`exp`
keep a revocation message from ever passing as an access token, and an access token from
passing as a revocation.

- `token_hash_prefix`: the first 16 hex digits of the SHA-256 of the bearer value (64 bits):
  enough to match a presented token, useless to forge one. `jti`: the access token's `jti`
  (= the credential id) for access tokens, null for API keys.
- `reason`: `revoked:<reason>` (`revoked:operator`, `revoked:logout`,
  `revoked:registration_expired`, ...) or `expired`; `effective_at`: the event's occurred-at.
- `position`: the event's log position; `previous_position`: the log position of the previous
  credential-ending event of the same tenant (0 for the first). The messages of a tenant form
  a chain: a subscriber that holds every revocation up to position P and then meets a message
  whose `previous_position` is above P has missed one, and resynchronises. Positions are a
  function of the log alone, so the chain is the same whoever publishes it, and again after a
  re-publication.

This module depends on msgspec and cryptography only, so the subscriber client can import it
without pulling in the service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

TYP = "authledger-revocation+jwt"
ALG = "EdDSA"
MSG_ID_HEADER = "Nats-Msg-Id"
MSG_ID_SUFFIX = ":revocation"
POSITION_HEADER = "Authledger-Revocation-Position"
SUBJECT_WORD = "revocations"
PREFIX_LENGTH = 16
CredentialKind = Literal["api_key", "access_token", "refresh_token"]


class Revocation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The claims of one revocation message (absent optional claims are left out, not null:
    RFC 7519 wants `jti` a string when present)."""

    iss: str
    tenant: str
    position: int
    previous_position: int
    event_id: str
    credential_id: str
    credential_kind: CredentialKind
    token_hash_prefix: str
    reason: str
    effective_at: datetime
    iat: int
    jti: str | None = None
    registration_id: str | None = None
    user_id: str | None = None

    @property
    def msg_id(self) -> str:
        return msg_id(self.event_id)


class Header(msgspec.Struct, frozen=True):
    alg: str
    kid: str
    typ: str


class BadMessage(Exception):
    """Not a well-formed revocation message (or not one at all)."""


class BadSignature(BadMessage):
    """Well-formed, but its signature does not verify under the key it names: tampered."""


class UnknownKey(BadMessage):
    """Signed by a key the given JWKS does not hold (fetch the JWKS again, or resync)."""


def subject(prefix: str, tenant: str) -> str:
    return f"{prefix}.{tenant}.{SUBJECT_WORD}"


def all_tenants(prefix: str) -> str:
    """The wildcard subject of every tenant's revocations (one token between)."""
    return f"{prefix}.*.{SUBJECT_WORD}"


def msg_id(event_id: str) -> str:
    return f"{event_id}{MSG_ID_SUFFIX}"


def headers(claims: Revocation) -> dict[str, str]:
    return {MSG_ID_HEADER: claims.msg_id, POSITION_HEADER: str(claims.position)}


def hash_prefix(token_hash: str) -> str:
    """The prefix carried in messages, from a full hex SHA-256."""
    return token_hash[:PREFIX_LENGTH].lower()


def token_prefix(token: str) -> str:
    """The prefix of a bearer value, as the service hashes it (SHA-256 of its UTF-8)."""
    return hash_prefix(hashlib.sha256(token.encode()).hexdigest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadMessage("not base64url") from None


_encoder = msgspec.json.Encoder()
_claims = msgspec.json.Decoder(Revocation)
_header = msgspec.json.Decoder(Header)


def sign(claims: Revocation, private_key: Ed25519PrivateKey, kid: str) -> str:
    """The compact JWS of `claims`."""
    head = _b64(_encoder.encode(Header(alg=ALG, kid=kid, typ=TYP)))
    body = _b64(_encoder.encode(claims))
    signing_input = f"{head}.{body}".encode("ascii")
    return f"{head}.{body}.{_b64(private_key.sign(signing_input))}"


def _split(token: str | bytes) -> tuple[str, str, str]:
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
    parts = text.strip().split(".")
    if len(parts) != 3:  # header.payload.signature
        raise BadMessage("not a compact JWS")
    return parts[0], parts[1], parts[2]


def key_id(token: str | bytes) -> str:
    """The `kid` a message names, read without verifying anything."""
    return _read_header(_split(token)[0]).kid


def _read_header(part: str) -> Header:
    try:
        header = _header.decode(_unb64(part))
    except msgspec.DecodeError:
        raise BadMessage("malformed JWS header") from None
    if header.typ != TYP or header.alg != ALG:
        raise BadMessage(f"not an {TYP} ({header.typ}, {header.alg})")
    return header


def unverified(token: str | bytes) -> Revocation:
    """The claims, NOT verified: for logs and scans only, never to act on."""
    try:
        return _claims.decode(_unb64(_split(token)[1]))
    except msgspec.DecodeError as exc:
        raise BadMessage(f"malformed claims: {exc}") from None


def public_keys(jwks: Mapping[str, object]) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 keys of a JWK Set, by kid; keys of other types are left out."""
    found: dict[str, Ed25519PublicKey] = {}
    keys = jwks.get("keys")
    for jwk in keys if isinstance(keys, list) else []:
        if not isinstance(jwk, dict):
            continue
        kid, x = jwk.get("kid"), jwk.get("x")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if isinstance(kid, str) and isinstance(x, str):
            try:
                found[kid] = Ed25519PublicKey.from_public_bytes(_unb64(x))
            except (BadMessage, ValueError):
                continue
    return found


def verify(token: str | bytes, keys: dict[str, Ed25519PublicKey]) -> Revocation:
    """The claims of a message whose signature verifies under `keys` (from `public_keys`).

    Raises UnknownKey when `keys` lacks the named kid, BadSignature when the signature does
    not verify, BadMessage for anything malformed."""
    head, body, signature = _split(token)
    header = _read_header(head)
    key = keys.get(header.kid)
    if key is None:
        raise UnknownKey(f"unknown kid {header.kid}")
    try:
        key.verify(_unb64(signature), f"{head}.{body}".encode("ascii"))
    except (InvalidSignature, UnicodeEncodeError):
        raise BadSignature(f"signature does not verify under kid {header.kid}") from None
    try:
        claims = _claims.decode(_unb64(body))
    except msgspec.DecodeError as exc:
        raise BadMessage(f"malformed claims: {exc}") from None
    if len(claims.token_hash_prefix) != PREFIX_LENGTH:
        raise BadMessage("token_hash_prefix has the wrong length")
    return claims


def to_json(claims: Revocation) -> dict[str, object]:
    """The claims as a JSON object (for `--json` output and the admin API)."""
    decoded: dict[str, object] = msgspec.json.decode(_encoder.encode(claims))
    return {"jti": None, "registration_id": None, "user_id": None, **decoded}
