"""The pure half of checking a Security Event Token at `/agent/event/notify` (contract V9,
RFC 8417 / RFC 8935; decisions O-K, O-L).

Errors are the events family's two codes: `authentication_failed` for whatever says the token
is not a valid statement from its issuer to us, `invalid_request` for what is malformed:

- JWS shape (jwt_parts.py, read without a typ demand) → `invalid_request`; an `alg` outside
  ALGORITHMS → `authentication_failed`;
- `typ` other than `secevent+jwt` (any case, `application/` tolerated), e.g. a `logout+jwt`
  sent to the wrong door (contract case 30) → `authentication_failed`;
- [`iss` trusted → `invalid_issuer`, alg allowed for the issuer, key and signature →
  `authentication_failed`: the caller's, they need the trust list and the JWKS];
- `aud` a string or an array holding our issuer, one trailing `/` ignored (O-K) →
  else `authentication_failed`;
- times (security finding 8's rule, `claims.recent_times`, as for logout tokens): `iat`
  required, a NumericDate, not after now + 60 s and not before now - 300 s whatever `exp`
  says; `nbf`, when present, not after now + 60 s; `exp`, when present, after now - 60 s and
  at most 600 s after `iat` → else `authentication_failed`;
- `jti`, `sub` missing or not text → `invalid_request`;
- `events` a non-empty object whose every member is an object → else `invalid_request`.

Replay of `(iss, jti)` is the caller's (the shared store, `remember_until`); it answers
`invalid_request` (O-K). Which event URIs are acted on is the caller's too: a SET carrying
none we support is accepted and does nothing (contract case 31).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from service.domain.errors import ProtocolError
from service.providers.claims import LOGOUT_MAX_AGE, recent_times
from service.providers.jwt_parts import Jws, Refusal, audience_ok, is_text, read_jws, type_is
from service.providers.trust import ALGORITHMS, TrustedIssuer

SET_TYPE = "secevent+jwt"
SET_MAX_AGE = LOGOUT_MAX_AGE  # seconds a SET is accepted after its iat, with or without exp
SetCode = Literal["authentication_failed", "invalid_request"]


class SetRefused(Refusal[SetCode]):
    """The SET is refused with the error `code`."""


@dataclass(frozen=True, slots=True)
class VerifiedSet:
    """A SET that passed every check but the replay one."""

    issuer: str
    subject: str
    audience: str
    jti: str
    issued_at: datetime
    remember_until: datetime  # min(exp, iat + 300 s) + skew: how long the jti is kept
    events: Mapping[str, Mapping[str, Any]]

    def carries(self, uri: str) -> bool:
        return uri in self.events


def read_set(token: str) -> Jws:
    """The SET's JWS with its header checked (shape, alg, kid, `typ`); not the signature."""
    try:
        jws = read_jws(token, typ=None)
    except ProtocolError as exc:
        code: SetCode = "authentication_failed" if exc.code == "invalid_signature" else (
            "invalid_request"
        )  # fmt: skip
        raise SetRefused(code, exc.message) from None
    check_set_type(jws.header)
    return jws


def check_set_type(header: dict[str, Any]) -> None:
    if not type_is(header, SET_TYPE):
        raise SetRefused("authentication_failed", f"the token typ is not {SET_TYPE}")


def check_set(jws: Jws, *, issuer: TrustedIssuer, audience: str, now: datetime) -> VerifiedSet:
    """The claims of a signature-checked SET from the trusted `issuer`, judged by the module
    docstring's rules (all but the replay); `audience` is our issuer."""
    check_set_type(jws.header)
    if jws.alg not in ALGORITHMS:
        raise SetRefused("authentication_failed", "the SET alg is not one we accept")
    claims = jws.payload
    if not audience_ok(claims.get("aud"), audience):
        raise SetRefused("authentication_failed", "the SET aud is not this service")
    issued_at, remember_until = _times(claims, now)
    subject, jti = claims.get("sub"), claims.get("jti")
    if not is_text(subject) or not is_text(jti):
        raise SetRefused("invalid_request", "the SET needs a sub and a jti")
    events = claims.get("events")
    if (
        not isinstance(events, dict)
        or not events
        or not all(isinstance(body, dict) for body in events.values())
    ):
        raise SetRefused("invalid_request", "the SET events are not a non-empty object of objects")
    return VerifiedSet(
        issuer=issuer.issuer,
        subject=str(subject),
        audience=audience,
        jti=str(jti),
        issued_at=issued_at,
        remember_until=remember_until,
        events=events,
    )


def _times(claims: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    try:
        return recent_times(claims, now, noun="SET")
    except ProtocolError as exc:
        raise SetRefused("authentication_failed", exc.message) from None
