"""The pure half of checking a provider's ID-JAG or logout token: judging its claims.

Everything here is a function of the token's claims, the trust entry and `now`; no I/O, so each
rule of spec §7.3 and §8 [OURS] has a unit test, and fuzzing can show that a hostile token only
ever yields a ProtocolError. Reading the compact JWS and the claim readers are jwt_parts.py's.

Choices where the spec leaves one:
- A header that is not well formed (no `alg` string, no `kid`, a `crit` member) is
  `invalid_request`; a well-formed `alg` outside ALGORITHMS or the issuer's list (`none`,
  `HS256`, ...) is `invalid_signature`.
- ID-JAG times: no `exp` or `iat`, or not a number → `invalid_request`; `exp` ≤ now - 60 s →
  `expired`; `iat` or `nbf` later than now + 60 s, or `exp - iat` > 600 s → `invalid_request`
  (a provider with a wrong clock or too long a lifetime must fix it; minting again won't help).
- `client_id` missing or not a string is `invalid_client_id`, like a wrong one.
- A `resource` claim is compared as `aud` is: one trailing `/` ignored.
- Optional claims we read (`amr`, `auth_time`, `name`, `agent_platform`, `agent_context_id`)
  must have their registered type when present, else `invalid_request`; so must `nbf`. A JSON
  null counts as absent (so a null `exp` is a missing one). Times must be NumericDates in
  [1970, 3000), else `invalid_request`.
- Logout tokens: a wrong `aud` is `invalid_signature` (as [REF], where it is a library failure);
  every time failure (no `iat`, `iat` or `nbf` in the future, `exp` passed, `iat` older than
  300 s with or without `exp`, or `exp - iat` > 600 s) is `invalid_request`, since `expired`
  belongs to E4 only (§9). So a logout token is taken at most 300 s after its `iat` whatever
  its `exp` says (security finding 8), and its jti is remembered until then + 60 s.
- Strings we hand on (iss, kid, sub, jti, ...) must be valid UTF-8 text without NUL, as they end
  up in Postgres and in logs.

Check order, ID-JAG: size, JWS shape, `typ`, header, [`iss` trusted, alg allowed for the issuer,
signature — in assertions.py], `aud`, times, `sub`/`jti` and optional claim types, `client_id`,
`resource`, identity, `amr`. Logout: the same up to the signature, then `aud`, times,
`sub`/`jti`, `nonce`, `events`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from service.domain.errors import ProtocolError
from service.providers.jwt_parts import (
    audience_ok,
    instant,
    is_text,
    numeric_date,
    same_url,
    text,
)
from service.providers.trust import (
    SKEW_SECONDS,
    TrustedIssuer,
    VerifiedAssertion,
    VerifiedLogout,
)

ID_JAG_TYPE = "oauth-id-jag+jwt"
LOGOUT_TYPE = "logout+jwt"
MAX_ID_JAG_LIFETIME = 600  # seconds between iat and exp
LOGOUT_MAX_AGE = 300  # seconds a logout token is accepted after its iat, with or without exp
MAX_LOGOUT_LIFETIME = MAX_ID_JAG_LIFETIME  # seconds between iat and exp, when exp is present


def _times(payload: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """(iat, exp) of an ID-JAG, per §7.3."""
    latest = now.timestamp() + SKEW_SECONDS
    exp, iat, nbf = (numeric_date(payload, n) for n in ("exp", "iat", "nbf"))
    if exp is None:
        raise ProtocolError("invalid_request", "the ID-JAG has no exp")
    if iat is None:
        raise ProtocolError("invalid_request", "the ID-JAG has no iat")
    if exp <= now.timestamp() - SKEW_SECONDS:
        raise ProtocolError("expired", "the ID-JAG has expired")
    if iat > latest:
        raise ProtocolError("invalid_request", "the ID-JAG is issued in the future")
    if nbf is not None and nbf > latest:
        raise ProtocolError("invalid_request", "the ID-JAG is not valid yet (nbf)")
    if exp - iat > MAX_ID_JAG_LIFETIME:
        raise ProtocolError(
            "invalid_request", f"the ID-JAG lives longer than {MAX_ID_JAG_LIFETIME} s"
        )
    return instant(iat), instant(exp)


def _verified(payload: dict[str, Any], flag: str, name: str) -> str | None:
    value = payload.get(name)
    return value if payload.get(flag) is True and is_text(value) else None


def _amr(payload: dict[str, Any]) -> tuple[str, ...]:
    amr = payload.get("amr")
    if amr is None:
        return ()
    if not isinstance(amr, list) or not all(is_text(method) for method in amr):
        raise ProtocolError("invalid_request", "amr is not an array of strings")
    return tuple(amr)


def check_id_jag(
    payload: dict[str, Any],
    *,
    issuer: TrustedIssuer,
    audience: str,
    resource: str,
    now: datetime,
    key_id: str,
    algorithm: str,
    resource_audience: bool = False,
) -> VerifiedAssertion:
    """The claims of a signature-checked ID-JAG, judged by §7.3 (all but the replay check).
    `resource_audience` (the v0.6 door, O-D): an `aud` naming the API's `resource` is
    accepted too, and the verified `audience` says which of the two it named (ours first)."""
    aud = payload.get("aud")
    if not audience_ok(aud, audience):
        if not (resource_audience and audience_ok(aud, resource)):
            raise ProtocolError(
                "invalid_audience", "the ID-JAG aud is not this authorization server"
            )
        audience = resource
    issued_at, expires_at = _times(payload, now)
    subject = text(payload, "sub", required=True)
    jti = text(payload, "jti", required=True)
    name, platform, context = (
        text(payload, n, required=False) for n in ("name", "agent_platform", "agent_context_id")
    )
    auth_time = numeric_date(payload, "auth_time")
    amr = _amr(payload)
    client_id = payload.get("client_id")
    if not is_text(client_id) or (
        client_id != issuer.issuer and client_id not in issuer.client_ids
    ):
        raise ProtocolError(
            "invalid_client_id", "the ID-JAG client_id is not accepted for its issuer"
        )
    if payload.get("resource") is not None and not same_url(payload["resource"], resource):
        raise ProtocolError("invalid_audience", "the ID-JAG resource is not this API")
    email = _verified(payload, "email_verified", "email")
    phone = _verified(payload, "phone_number_verified", "phone_number")
    if email is None and phone is None:
        raise ProtocolError("missing_verified_email", "the ID-JAG has no verified email or phone")
    if not set(issuer.required_amr) <= set(amr):
        raise ProtocolError(
            "insufficient_user_authentication", "the ID-JAG amr lacks a required method"
        )
    return VerifiedAssertion(
        issuer=issuer.issuer,
        subject=str(subject),
        audience=audience,
        jti=str(jti),
        client_id=str(client_id),
        issued_at=issued_at,
        expires_at=expires_at,
        key_id=key_id,
        algorithm=algorithm,
        email=email,
        phone_number=phone,
        name=name,
        amr=amr,
        auth_time=None if auth_time is None else instant(auth_time),
        agent_platform=platform,
        agent_context_id=context,
    )


def recent_times(
    payload: dict[str, Any], now: datetime, *, noun: str = "logout token"
) -> tuple[datetime, datetime]:
    """(iat, remember_until) of a logout token, per §8 [OURS] and security finding 8; the same
    rule holds for V9's SETs (set_claims.py, which gives its failures another code)."""
    current = now.timestamp()
    iat, exp, nbf = (numeric_date(payload, n) for n in ("iat", "exp", "nbf"))
    if iat is None:
        raise ProtocolError("invalid_request", f"the {noun} has no iat")
    if iat > current + SKEW_SECONDS or (nbf is not None and nbf > current + SKEW_SECONDS):
        raise ProtocolError("invalid_request", f"the {noun} is issued in the future")
    if exp is not None and exp <= current - SKEW_SECONDS:
        raise ProtocolError("invalid_request", f"the {noun} has expired")
    if exp is not None and exp - iat > MAX_LOGOUT_LIFETIME:
        raise ProtocolError(
            "invalid_request", f"the {noun} lives longer than {MAX_LOGOUT_LIFETIME} s"
        )
    if current - iat > LOGOUT_MAX_AGE:
        raise ProtocolError("invalid_request", f"the {noun} is older than {LOGOUT_MAX_AGE} s")
    last_valid = iat + LOGOUT_MAX_AGE if exp is None else min(exp, iat + LOGOUT_MAX_AGE)
    return instant(iat), instant(last_valid) + timedelta(seconds=SKEW_SECONDS)


def check_logout(
    payload: dict[str, Any],
    *,
    issuer: TrustedIssuer,
    audience: str,
    events_supported: Sequence[str],
    now: datetime,
) -> VerifiedLogout:
    """The claims of a signature-checked logout token, judged by §8 [OURS] (not the replay)."""
    if not audience_ok(payload.get("aud"), audience):
        raise ProtocolError("invalid_signature", "the logout token aud is not this service")
    issued_at, remember_until = recent_times(payload, now)
    subject = text(payload, "sub", required=True)
    jti = text(payload, "jti", required=True)
    if "nonce" in payload:
        raise ProtocolError("invalid_request", "a logout token must not carry a nonce")
    events = payload.get("events")
    if not isinstance(events, dict):
        events = {}
    event = next((uri for uri in events_supported if isinstance(events.get(uri), dict)), None)
    if event is None:
        raise ProtocolError("invalid_request", "the logout token carries no supported event")
    return VerifiedLogout(
        issuer=issuer.issuer,
        subject=str(subject),
        audience=audience,
        jti=str(jti),
        issued_at=issued_at,
        remember_until=remember_until,
        event=event,
    )
