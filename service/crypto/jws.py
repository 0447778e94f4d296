"""Compact JWS made with the key ring's keys, and the checks every one of them gets back.

One path for every token the service signs and later reads itself: access tokens (`at+jwt`,
spec §13 O12) and the v0.6 identity assertions (service/crypto/assertions.py). A token is
refused unless it is three base64url segments in their canonical spelling, its `typ` is the
expected one (any case, `application/` tolerated), its kid names a key the ring holds, its
`alg` is that key's, the signature verifies, `iss` and `aud` are the expected ones, every
required claim is present, and its times hold at the injected `now` with LEEWAY of skew
(`exp` not passed, `iat` and `nbf` not in the future).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:
    from service.crypto.signing import SigningKey

LEEWAY = timedelta(seconds=60)


class AccessTokenError(Exception):
    """A token of this ring (an access token, an assertion) was refused; the message says why
    (never the token itself)."""


class ExpiredAccessToken(AccessTokenError):
    """The token's `exp` (plus the allowed skew) has passed."""


class UnknownSigningKey(AccessTokenError):
    """The token names a kid this ring does not hold (reload the ring if another rotated)."""


def sign_with(key: SigningKey, claims: dict[str, Any], *, typ: str) -> str:
    """`claims` as a compact JWS under `key`, its header naming `typ` and the key's kid."""
    headers = {"typ": typ, "kid": key.kid}
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=headers)


def verify_with(
    keys: Mapping[str, SigningKey],
    token: str,
    *,
    typ: str,
    issuer: str,
    audience: str,
    require: tuple[str, ...],
    now: datetime,
) -> dict[str, Any]:
    """The claims of `token` if it passes every check of the module docstring with one of
    `keys`; AccessTokenError (UnknownSigningKey for a kid not in `keys`) if not."""
    if not isinstance(token, str) or not _canonical(token):
        raise AccessTokenError("malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AccessTokenError("malformed token") from None
    declared, kid, alg = header.get("typ"), header.get("kid"), header.get("alg")
    if not isinstance(declared, str) or declared.lower().removeprefix("application/") != typ:
        raise AccessTokenError(f"token type is not {typ}")
    if not isinstance(kid, str):
        raise AccessTokenError("token has no kid")
    key = keys.get(kid)
    if key is None:
        raise UnknownSigningKey("token signed by an unknown key")
    if alg != key.alg:
        raise AccessTokenError("token algorithm does not match its key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.private_key.public_key(),
            algorithms=[key.alg],
            audience=audience,
            issuer=issuer,
            options={
                "require": list(require),
                "verify_exp": False,  # checked below against the injected clock
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise AccessTokenError(f"token refused: {type(exc).__name__}") from None
    _check_times(claims, now)
    return claims


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _canonical(token: str) -> bool:
    """Three base64url segments, each in its one canonical spelling (no padding, no stray
    bits in the last character), so that no other string is the same valid token."""
    segments = token.split(".")
    if len(segments) != 3 or not token.isascii():
        return False
    try:
        decoded = [base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)) for s in segments]
    except (ValueError, binascii.Error):
        return False
    return all(_b64url(raw) == s for raw, s in zip(decoded, segments, strict=True))


def _check_times(claims: dict[str, Any], now: datetime) -> None:
    instant, skew = now.timestamp(), LEEWAY.total_seconds()
    times = {name: claims.get(name) for name in ("iat", "nbf", "exp")}
    for name, value in times.items():
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise AccessTokenError(f"token {name} is not a number")
    if claims.get("exp") is None:
        raise AccessTokenError("token has no exp")
    if claims["exp"] + skew <= instant:
        raise ExpiredAccessToken("token expired")
    if claims.get("nbf") is not None and claims["nbf"] - skew > instant:
        raise AccessTokenError("token not yet valid")
    if claims.get("iat") is not None and claims["iat"] - skew > instant:
        raise AccessTokenError("token issued in the future")
