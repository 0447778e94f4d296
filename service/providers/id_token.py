"""The pure half of checking an OpenID Connect provider's ID token at sign-in (OpenID Connect
Core 1.0, section 3.1.3.7), for service/signin/oidc.py.

The token comes back from the provider's token endpoint over TLS, in answer to our own code
exchange, so this is the check a confidential or PKCE client owes it, nothing more: the JWS
is read by jwt_parts.py without a `typ` demand (providers send none, or `JWT`), `alg` must be
one of ALGORITHMS (never `none` or HMAC), and the signature is checked by the caller with the
provider's key from its `jwks_uri` (the JwksCache). Then, in this order:

- `iss` exactly the configured issuer (no trailing-slash tolerance: OIDC compares strings);
- `aud` our client id, or an array holding it; an array of more than one needs `azp`, and an
  `azp` present must be our client id;
- `exp` after now - 60 s, `iat` present and not after now + 60 s;
- `nonce` equal to the one sealed in the sign-in's cookie (constant-time);
- `sub` present; `email` present and `email_verified` exactly `true` (a string "true" is no
  verification).

Every refusal is IdTokenRefused naming the failed check, which the sign-in page shows; no
session is made.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from service.domain.errors import ProtocolError
from service.providers.jwt_parts import Jws, Refusal, instant, is_text, numeric_date, read_jws
from service.providers.trust import ALGORITHMS, SKEW_SECONDS

IdTokenCheck = Literal[
    "malformed", "alg", "signature", "iss", "aud", "azp", "exp", "iat", "nonce", "sub",
    "email", "email_verified", "auth_time",
]  # fmt: skip


class IdTokenRefused(Refusal[IdTokenCheck]):
    """The ID token failed the check named by `code`."""


@dataclass(frozen=True, slots=True)
class IdTokenClaims:
    """What a valid ID token tells us about the person who signed in."""

    issuer: str
    subject: str
    email: str
    issued_at: datetime
    expires_at: datetime
    auth_time: datetime | None = None


def read_id_token(token: str) -> Jws:
    """The ID token's JWS, header checked (any typ, an allowed alg, a kid); not the signature."""
    try:
        return read_jws(token, typ=None)
    except ProtocolError as exc:
        check: IdTokenCheck = "alg" if exc.code == "invalid_signature" else "malformed"
        raise IdTokenRefused(check, exc.message) from None


def check_id_token(
    jws: Jws, *, issuer: str, client_id: str, nonce: str, now: datetime
) -> IdTokenClaims:
    """The claims of a signature-checked ID token, judged by the module docstring's rules."""
    if jws.alg not in ALGORITHMS:
        raise IdTokenRefused("alg", "the ID token alg is not one we accept")
    claims = jws.payload
    if claims.get("iss") != issuer:
        raise IdTokenRefused("iss", "the ID token iss is not the configured issuer")
    _check_audience(claims, client_id)
    expires, issued = _date(claims, "exp"), _date(claims, "iat")
    if expires is None or expires <= now.timestamp() - SKEW_SECONDS:
        raise IdTokenRefused("exp", "the ID token has expired (or has no exp)")
    if issued is None or issued > now.timestamp() + SKEW_SECONDS:
        raise IdTokenRefused("iat", "the ID token is issued in the future (or has no iat)")
    said = claims.get("nonce")
    if not is_text(said) or not hmac.compare_digest(str(said).encode(), nonce.encode()):
        raise IdTokenRefused("nonce", "the ID token nonce is not this sign-in's")
    if not is_text(claims.get("sub")):
        raise IdTokenRefused("sub", "the ID token has no sub")
    if not is_text(claims.get("email")):
        raise IdTokenRefused("email", "the ID token has no email")
    if claims.get("email_verified") is not True:
        raise IdTokenRefused("email_verified", "the provider has not verified the email")
    auth_time = _date(claims, "auth_time")
    return IdTokenClaims(
        issuer=issuer,
        subject=str(claims["sub"]),
        email=str(claims["email"]),
        issued_at=instant(issued),
        expires_at=instant(expires),
        auth_time=None if auth_time is None else instant(auth_time),
    )


def _check_audience(claims: dict[str, Any], client_id: str) -> None:
    aud, azp = claims.get("aud"), claims.get("azp")
    if isinstance(aud, list):
        if client_id not in aud:
            raise IdTokenRefused("aud", "the ID token aud does not hold our client id")
        if len(aud) > 1 and azp is None:
            raise IdTokenRefused("azp", "the ID token names several audiences and no azp")
    elif aud != client_id:
        raise IdTokenRefused("aud", "the ID token aud is not our client id")
    if azp is not None and azp != client_id:
        raise IdTokenRefused("azp", "the ID token azp is not our client id")


def _date(claims: dict[str, Any], name: Literal["exp", "iat", "auth_time"]) -> float | None:
    try:
        return numeric_date(claims, name)
    except ProtocolError:
        raise IdTokenRefused(name, f"the ID token {name} is not a valid time") from None
