"""The signing key ring, and RFC 9068 `at+jwt` access tokens (spec §13 O12).

The key ring holds Ed25519 keys (JWS alg `EdDSA`), each named by the RFC 7638 thumbprint of
its public JWK. One key is active and signs; a rotation retires it but keeps it, and the JWKS
keeps publishing it while tokens it signed may still be valid, so resource servers checking
tokens offline never meet an unknown `kid` for a live token. Private keys are stored wrapped
(AES-256-GCM, the kid as associated data) under a key derived from `AUTHLEDGER_SECRET_KEY`.

Each process holds the ring in memory: after another process rotates, `load` (or a verify that
raised UnknownSigningKey followed by `load_on_miss`) picks the new key up. Signing and the
checks on what comes back are service/crypto/jws.py's, shared with the v0.6 identity
assertions (service/crypto/assertions.py).

Public keys are derived from the private keys at load, never taken from the stored
`public_jwk` column: a row whose stored public part or kid disagrees with its private key
(someone with the database password swapped in a key of theirs, so that tokens they sign
would check against our JWKS) is refused loudly (`signing.public_key_mismatch`) and neither
published nor used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import asyncpg
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.crypto.jws import LEEWAY, sign_with, verify_with
from service.crypto.tokens import SIGNING_KEK, derive_key

ALG = "EdDSA"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
MISS_RELOAD_INTERVAL = timedelta(seconds=5)  # at most one reload per ring for unknown kids
SIGNING_LOCK = 0x6175_7468_7369_676E  # "authsign"
NONCE_BYTES = 12
REQUIRED_CLAIMS = ("iss", "sub", "aud", "client_id", "jti", "iat", "exp")
log = structlog.get_logger("service.crypto.signing")

_SELECT_KEYS = """
SELECT kid, alg, private_key, public_jwk::text AS public_jwk, created_at, activated_at, retired_at
FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at, kid
"""
_HAS_ACTIVE = """
SELECT EXISTS (
    SELECT 1 FROM signing_keys
    WHERE tenant_id = $1 AND activated_at IS NOT NULL AND retired_at IS NULL
)
"""
_RETIRE_ACTIVE = """
UPDATE signing_keys SET retired_at = greatest(activated_at, $1)
WHERE tenant_id = $2 AND activated_at IS NOT NULL AND retired_at IS NULL
"""
_INSERT_KEY = """
INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, activated_at, tenant_id)
VALUES ($1, $2, $3, $4::text::json, $5, $5, $6)
"""


class NoActiveKey(RuntimeError):
    """Tokens cannot be issued: the ring has no active key (call `ensure_active`)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: Ed25519PrivateKey
    public_jwk: dict[str, str]
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None

    @property
    def active(self) -> bool:
        return self.activated_at is not None and self.retired_at is None


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an OKP key: members crv, kty, x."""
    required = {name: jwk[name] for name in ("crv", "kty", "x")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def public_jwk(private_key: Ed25519PrivateKey) -> dict[str, str]:
    """The public JWK (RFC 8037) of an Ed25519 key, with its thumbprint as kid."""
    raw = private_key.public_key().public_bytes_raw()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
    return {**jwk, "kid": thumbprint(jwk), "alg": ALG, "use": "sig"}


class KeyRing:
    """The signing keys of one tenant (the default one unless named), from `signing_keys`."""

    def __init__(self, secret_key: str | bytes, tenant_id: str = "default") -> None:
        self._kek = AESGCM(derive_key(secret_key, SIGNING_KEK))
        self._keys: dict[str, SigningKey] = {}
        self.tenant_id = tenant_id
        self.secret_key = secret_key  # so another tenant's ring can be made alike
        self._loaded_at: datetime | None = None  # when `load_on_miss` last reloaded

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys.values())

    @property
    def held(self) -> Mapping[str, SigningKey]:
        """The keys by kid, retired ones included: what a token of this ring may name."""
        return MappingProxyType(self._keys)

    @property
    def active(self) -> SigningKey | None:
        return next((k for k in self._keys.values() if k.active), None)

    async def load(self, pool: asyncpg.Pool) -> None:
        """Replace the in-memory ring with what the database holds."""
        rows = await pool.fetch(_SELECT_KEYS, self.tenant_id)
        keys = (self._from_row(row) for row in rows)
        self._keys = {key.kid: key for key in keys if key is not None}

    async def load_on_miss(self, pool: asyncpg.Pool, now: datetime) -> bool:
        """`load` after a token named an unknown kid (another process may have rotated),
        unless this ring did so less than MISS_RELOAD_INTERVAL ago: forged kids cost at most
        one query per interval. Whether it reloaded."""
        if self._loaded_at is not None and now - self._loaded_at < MISS_RELOAD_INTERVAL:
            return False
        self._loaded_at = now
        await self.load(pool)
        return True

    def hold(self, key: SigningKey) -> None:
        """Keep `key` in memory without the database (a ring for pure tests or tools)."""
        self._keys[key.kid] = key

    async def ensure_active(self, pool: asyncpg.Pool, now: datetime) -> SigningKey:
        """The active key, creating one first if there is none (safe from many processes)."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SIGNING_LOCK)
            if not await conn.fetchval(_HAS_ACTIVE, self.tenant_id):
                await self._insert_new(conn, now)
        return await self._reload_active(pool)

    async def rotate(self, pool: asyncpg.Pool, now: datetime) -> SigningKey:
        """Retire the active key (kept for the JWKS) and activate a new one."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SIGNING_LOCK)
            await conn.execute(_RETIRE_ACTIVE, now, self.tenant_id)
            await self._insert_new(conn, now)
        return await self._reload_active(pool)

    def jwks(self, now: datetime, max_token_ttl: timedelta) -> dict[str, list[dict[str, str]]]:
        """The JWK Set to publish: the active key and retired keys whose tokens may still be
        valid (retired less than the token lifetime plus the allowed skew ago)."""
        window = max_token_ttl + LEEWAY
        published = [
            key
            for key in self._keys.values()
            if key.active or (key.retired_at is not None and key.retired_at + window > now)
        ]
        return {"keys": [dict(key.public_jwk) for key in published]}

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        """A compact JWS of `claims` from the active key, with `typ` and its kid."""
        key = self.active
        if key is None:
            raise NoActiveKey("no active signing key")
        return sign_with(key, claims, typ=typ)

    def issue_access_token(
        self,
        *,
        issuer: str,
        audience: str,
        subject: str,
        client_id: str,
        scopes: tuple[str, ...] | list[str],
        jti: str,
        now: datetime,
        ttl: timedelta,
    ) -> str:
        """A signed RFC 9068 access token from the active key."""
        issued = int(now.timestamp())
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "jti": jti,
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(ttl.total_seconds()),
        }
        return self.sign(claims, typ=ACCESS_TOKEN_TYPE)

    def verify_access_token(
        self, token: str, *, issuer: str, audience: str, now: datetime
    ) -> dict[str, Any]:
        """The claims of a valid token signed by a key of this ring; AccessTokenError if not."""
        return verify_with(
            self._keys, token, typ=ACCESS_TOKEN_TYPE, issuer=issuer, audience=audience,
            require=REQUIRED_CLAIMS, now=now,
        )  # fmt: skip

    async def _insert_new(self, conn: asyncpg.pool.PoolConnectionProxy, now: datetime) -> None:
        key = new_signing_key(now)
        wrapped = _wrap(self._kek, key.kid, key.private_key)
        jwk = json.dumps(key.public_jwk)
        await conn.execute(_INSERT_KEY, key.kid, ALG, wrapped, jwk, now, self.tenant_id)

    async def _reload_active(self, pool: asyncpg.Pool) -> SigningKey:
        await self.load(pool)
        key = self.active
        if key is None:  # the partial unique index and the lock make this unreachable
            raise NoActiveKey("no active signing key after creating one")
        return key

    def _from_row(self, row: asyncpg.Record) -> SigningKey | None:
        """The row's key with its public JWK derived from the private key; None (logged) when
        the stored public part or kid is not that key's."""
        kid: str = row["kid"]
        private_key = _unwrap(self._kek, kid, row["private_key"])
        derived = public_jwk(private_key)
        stored = _stored_jwk(row["public_jwk"])
        if derived["kid"] != kid or any(stored.get(k) != derived[k] for k in PUBLIC_MEMBERS):
            log.error(
                "signing.public_key_mismatch",
                kid=kid,
                tenant=self.tenant_id,
                reason="the stored public key or kid is not the private key's: key refused",
            )
            return None
        return SigningKey(
            kid=kid,
            alg=row["alg"],
            private_key=private_key,
            public_jwk=derived,
            created_at=row["created_at"],
            activated_at=row["activated_at"],
            retired_at=row["retired_at"],
        )


PUBLIC_MEMBERS = ("kty", "crv", "x", "kid")


def new_signing_key(now: datetime) -> SigningKey:
    """A fresh Ed25519 key, active from `now` (not stored: `ensure_active` and `rotate` do)."""
    private_key = Ed25519PrivateKey.generate()
    jwk = public_jwk(private_key)
    return SigningKey(jwk["kid"], ALG, private_key, jwk, now, now, None)


def _stored_jwk(raw: str | None) -> dict[str, Any]:
    try:
        stored = json.loads(raw) if raw is not None else None
    except ValueError:
        return {}
    return stored if isinstance(stored, dict) else {}


def wrap_private_key(secret_key: str | bytes, kid: str, private_key: Ed25519PrivateKey) -> bytes:
    """A private key as `signing_keys` stores it, under `secret_key` (a rotation's new one)."""
    return _wrap(AESGCM(derive_key(secret_key, SIGNING_KEK)), kid, private_key)


def unwrap_private_key(secret_key: str | bytes, kid: str, wrapped: bytes) -> Ed25519PrivateKey:
    """The private key of a `signing_keys` row; RuntimeError if `secret_key` did not wrap it."""
    return _unwrap(AESGCM(derive_key(secret_key, SIGNING_KEK)), kid, wrapped)


def _wrap(kek: AESGCM, kid: str, private_key: Ed25519PrivateKey) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + kek.encrypt(nonce, private_key.private_bytes_raw(), kid.encode())


def _unwrap(kek: AESGCM, kid: str, wrapped: bytes) -> Ed25519PrivateKey:
    try:
        raw = kek.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], kid.encode())
    except InvalidTag:
        raise RuntimeError(f"signing key {kid} does not unwrap (wrong secret key?)") from None
    return Ed25519PrivateKey.from_private_bytes(raw)
