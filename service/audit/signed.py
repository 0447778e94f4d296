"""Signed chain checkpoints: `(position, chain hash at that position, signed_at)` as a compact
JWS (RFC 7515) signed with one of the service's EdDSA keys, named by `kid`.

    header   {"alg": "EdDSA", "kid": <RFC 7638 thumbprint>, "typ": "authledger-checkpoint+jws"}
    payload  {"position": 1000, "chain_hash": "<64 hex>", "signed_at": "<ISO 8601, UTC>"}

Pure: no database, no network. Verification needs only the public JWK of the `kid`, so the
offline checker (service/audit/check.py) uses the same function as `authledger audit verify`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.api_jws import PyJWS

ALG = "EdDSA"
TYP = "authledger-checkpoint+jws"
Jwk = Mapping[str, Any]
_jws = PyJWS(algorithms=[ALG])


class BadCheckpoint(Exception):
    """A checkpoint that does not verify; the message says why."""


class UnknownKey(BadCheckpoint):
    """Signed by a key that is not among those given: not checkable (rather than false)."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"signed by key {kid}, which is not among the keys given")
        self.kid = kid


@dataclass(frozen=True, slots=True)
class Checkpoint:
    position: int
    chain_hash: bytes
    signed_at: datetime
    kid: str
    jws: str


def sign(
    *, private_key: Ed25519PrivateKey, kid: str, position: int, chain_hash: bytes, at: datetime
) -> Checkpoint:
    signed_at = at.astimezone(UTC)
    payload = {
        "position": position,
        "chain_hash": chain_hash.hex(),
        "signed_at": signed_at.isoformat(timespec="microseconds"),
    }
    token = _jws.encode(
        json.dumps(payload, separators=(",", ":")).encode(),
        private_key,
        algorithm=ALG,
        headers={"kid": kid, "typ": TYP},
    )
    return Checkpoint(position, chain_hash, signed_at, kid, token)


def verify(token: str, keys: Mapping[str, Jwk]) -> Checkpoint:
    """The checkpoint a JWS signs, if its signature holds under the JWK its `kid` names."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise BadCheckpoint("not a compact JWS") from None
    kid = header.get("kid")
    if header.get("alg") != ALG or header.get("typ") != TYP or not isinstance(kid, str):
        raise BadCheckpoint("not an authledger checkpoint (alg, typ or kid)")
    jwk = keys.get(kid)
    if jwk is None:
        raise UnknownKey(kid)
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=ALG).key
        if not isinstance(key, Ed25519PublicKey):
            raise BadCheckpoint(f"key {kid} is not an Ed25519 public key")
        decoded = _jws.decode_complete(token, key=key, algorithms=[ALG])
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise BadCheckpoint("signature does not verify") from None
    try:
        claims = json.loads(decoded["payload"])
        position, chain_hash = claims["position"], bytes.fromhex(claims["chain_hash"])
        signed_at = datetime.fromisoformat(claims["signed_at"])
    except (ValueError, KeyError, TypeError):
        raise BadCheckpoint("payload is not a checkpoint") from None
    if not isinstance(position, int) or position < 1 or len(chain_hash) != 32:
        raise BadCheckpoint("payload is not a checkpoint")
    return Checkpoint(position, chain_hash, signed_at, kid, token)


def key_set(jwks: Mapping[str, Any]) -> dict[str, Jwk]:
    """`{"keys": [...]}` by kid (keys without a kid are ignored)."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise BadCheckpoint('a JWKS is an object with a "keys" list')
    return {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}


def claimed_position(token: str) -> int:
    """The position a checkpoint JWS claims, unverified (0 if it names none): only to say
    where a checkpoint that does not verify would have anchored the log."""
    try:
        claims = json.loads(
            _jws.decode_complete(token, options={"verify_signature": False})["payload"]
        )
        position = claims["position"]
    except (jwt.PyJWTError, ValueError, KeyError, TypeError):
        return 0
    return position if isinstance(position, int) and position > 0 else 0
