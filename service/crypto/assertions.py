"""The service-signed identity assertion of the v0.6 dialect (contract V1, V6, V7; O-C, O-F).

A stateless JWT the agent trades at the token endpoint (V6) for an access token. It is signed
by the tenant's key ring like an access token, `EdDSA` rather than the contract's ES256 (O-C:
only we verify it, and the JWKS is EdDSA already), and checked on the way back through the
same code (service/crypto/jws.py):

- header `typ: oauth-id-jag+jwt` (the contract keeps the ID-JAG type on the wire; any case,
  `application/` tolerated), `alg` the key's, `kid` a key of the ring (after one reload of the
  ring on a miss, `verify_assertion_reloading`, as for access tokens);
- `iss` = `aud` = the tenant's issuer; `exp` not passed and `iat` not in the future, each with
  60 s of skew; non-empty `sub` (the registration id, or the deterministic `reg_…` of a
  delegation) and `jti` (`asr_…`); the private `gen` claim a JSON integer ≥ 0 (O-F: the
  exchange compares it with the generation the log gives, so a pre-claim assertion never
  gains post-claim scope);
- optional `email`, `email_verified` and `amr`, after a claim or from an ID-JAG; no scope
  (decided at each exchange).

Every refusal is AssertionRefused, which the token endpoint answers with `invalid_grant`. The
jti is not remembered: an assertion may be exchanged again until it expires (contract case 6).
Minting one writes nothing to the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from events.ids import random_token
from service.crypto.jws import AccessTokenError, UnknownSigningKey, verify_with
from service.crypto.signing import KeyRing

ASSERTION_TYPE = "oauth-id-jag+jwt"
MAX_ASSERTION_BYTES = 8 * 1024
REQUIRED_CLAIMS = ("iss", "aud", "sub", "jti", "iat", "exp", "gen")


class AssertionRefused(Exception):
    """The assertion is not one this service issued, or no longer valid (`invalid_grant`)."""


class UnknownAssertionKey(AssertionRefused):
    """Signed by a kid the ring does not hold: reload the ring once, then refuse."""


@dataclass(frozen=True, slots=True)
class AssertionClaims:
    """What a valid assertion says."""

    issuer: str
    subject: str
    jti: str
    gen: int
    issued_at: datetime
    expires_at: datetime
    email: str | None = None
    email_verified: bool | None = None
    amr: tuple[str, ...] = ()


def new_assertion_id() -> str:
    """`asr_` + 22 base64url characters (16 random bytes)."""
    return random_token("asr_", 16)


def issue_assertion(
    ring: KeyRing,
    *,
    issuer: str,
    sub: str,
    gen: int,
    now: datetime,
    ttl: timedelta,
    email: str | None = None,
    email_verified: bool | None = None,
    amr: Sequence[str] = (),
) -> tuple[str, datetime]:
    """A signed assertion for `sub` at generation `gen`, and the instant it expires."""
    if not sub or isinstance(gen, bool) or not isinstance(gen, int) or gen < 0:
        raise ValueError("an assertion needs a subject and an integer generation >= 0")
    issued = int(now.timestamp())
    expires = issued + int(ttl.total_seconds())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": issuer,
        "sub": sub,
        "jti": new_assertion_id(),
        "iat": issued,
        "exp": expires,
        "gen": gen,
    }
    if email is not None:
        claims["email"] = email
    if email_verified is not None:
        claims["email_verified"] = email_verified
    if amr:
        claims["amr"] = list(amr)
    return ring.sign(claims, typ=ASSERTION_TYPE), datetime.fromtimestamp(expires, UTC)


def verify_assertion(ring: KeyRing, token: str, *, issuer: str, now: datetime) -> AssertionClaims:
    """The claims of an assertion of `issuer` signed by `ring`; AssertionRefused if not
    (UnknownAssertionKey when the kid is not held: see `verify_assertion_reloading`)."""
    if not isinstance(token, str) or len(token) > MAX_ASSERTION_BYTES:
        raise AssertionRefused(f"the assertion is not a string of at most {MAX_ASSERTION_BYTES}")
    try:
        claims = verify_with(
            ring.held, token, typ=ASSERTION_TYPE, issuer=issuer, audience=issuer,
            require=REQUIRED_CLAIMS, now=now,
        )  # fmt: skip
    except UnknownSigningKey:
        raise UnknownAssertionKey("the assertion is signed by an unknown key") from None
    except AccessTokenError as exc:
        raise AssertionRefused(f"the assertion is refused: {exc}") from None
    return _read(claims)


async def verify_assertion_reloading(
    ring: KeyRing, pool: asyncpg.Pool, token: str, *, issuer: str, now: datetime
) -> AssertionClaims:
    """`verify_assertion`, reloading the ring once (`KeyRing.load_on_miss`) when the kid is
    unknown, as after another process rotated the key."""
    try:
        return verify_assertion(ring, token, issuer=issuer, now=now)
    except UnknownAssertionKey:
        if not await ring.load_on_miss(pool, now):
            raise
    return verify_assertion(ring, token, issuer=issuer, now=now)


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise AssertionRefused(f"the assertion {name} is not a non-empty string")
    return value


def _instant(claims: dict[str, Any], name: str) -> datetime:
    try:
        return datetime.fromtimestamp(claims[name], UTC)
    except (OverflowError, OSError, ValueError):
        raise AssertionRefused(f"the assertion {name} is out of range") from None


def _read(claims: dict[str, Any]) -> AssertionClaims:
    gen = claims.get("gen")
    if isinstance(gen, bool) or not isinstance(gen, int) or gen < 0:
        raise AssertionRefused("the assertion gen is not an integer >= 0")
    email, verified, amr = claims.get("email"), claims.get("email_verified"), claims.get("amr")
    if email is not None and (not isinstance(email, str) or not email):
        raise AssertionRefused("the assertion email is not a non-empty string")
    if verified is not None and not isinstance(verified, bool):
        raise AssertionRefused("the assertion email_verified is not a boolean")
    if amr is not None and (not isinstance(amr, list) or not all(isinstance(m, str) for m in amr)):
        raise AssertionRefused("the assertion amr is not an array of strings")
    return AssertionClaims(
        issuer=_text(claims, "iss"),
        subject=_text(claims, "sub"),
        jti=_text(claims, "jti"),
        gen=gen,
        issued_at=_instant(claims, "iat"),
        expires_at=_instant(claims, "exp"),
        email=email,
        email_verified=verified,
        amr=tuple(amr or ()),
    )
