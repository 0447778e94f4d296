"""The session of a person signed in on the v0.6 pages: a sealed, stateless cookie.

`authledger_session` (`__Host-authledger_session` off loopback, cookies.py), its value sealed
under the session key with the tenant and the cookie's name as associated data, holding
`{v: 1, sid, email, method, idp, auth_time, exp}`: `sid` a random id the CSRF tokens bind to,
`method` how the person proved the address (`email_link`, `oidc`), `idp` the OpenID issuer
for `oidc`. Nothing is stored on the server: signing out clears the cookie, `exp` ends it
(`Max-Age` is the same lifetime, SESSION_TTL), and the address lives sealed in the person's
own browser only. A session made on another tenant's host does not open here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from events.ids import random_token
from service.signin.cookies import CookieSpec, cookie, cookie_name, seal, unseal
from service.signin.keys import SignInKeys

SESSION_COOKIE = "authledger_session"
VERSION = 1
SKEW_SECONDS = 60
LATEST = 32_503_680_000  # 3000-01-01T00:00:00Z
Method = Literal["email_link", "oidc"]
METHODS: dict[object, Method] = {"email_link": "email_link", "oidc": "oidc"}


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    email: str
    method: Method
    idp: str | None  # the OpenID issuer when method is `oidc`
    auth_time: datetime
    expires_at: datetime


def new_session(
    email: str, method: Method, *, now: datetime, ttl: timedelta, idp: str | None = None
) -> Session:
    """A session for `email`, signed in now by `method`, ending after `ttl`."""
    if not email or method not in METHODS or (method == "oidc") != (idp is not None):
        raise ValueError("a session needs an address, its method, and the issuer for oidc")
    start = datetime.fromtimestamp(int(now.timestamp()), UTC)
    return Session(random_token("ses_", 16), email, method, idp, start, start + ttl)


def session_cookie(
    keys: SignInKeys, *, tenant_id: str, issuer: str, session: Session
) -> CookieSpec:
    """The Set-Cookie that starts `session` in the browser, for its remaining lifetime."""
    name = cookie_name(issuer, SESSION_COOKIE)
    fields: dict[str, Any] = {
        "v": VERSION,
        "sid": session.sid,
        "email": session.email,
        "method": session.method,
        "idp": session.idp,
        "auth_time": int(session.auth_time.timestamp()),
        "exp": int(session.expires_at.timestamp()),
    }
    lifetime = int((session.expires_at - session.auth_time).total_seconds())
    return cookie(issuer, SESSION_COOKIE, seal(keys.session, tenant_id, name, fields), lifetime)


def clear_session_cookie(issuer: str) -> CookieSpec:
    """The Set-Cookie that signs the browser out."""
    return cookie(issuer, SESSION_COOKIE, "", 0)


def open_session(
    keys: SignInKeys, *, tenant_id: str, issuer: str, value: str | None, now: datetime
) -> Session | None:
    """The session the cookie `value` holds, or None: absent, not sealed by us for this tenant
    and cookie, of another version, malformed, or ended at `now`."""
    fields = unseal(keys.session, tenant_id, cookie_name(issuer, SESSION_COOKIE), value)
    if fields is None or fields.get("v") != VERSION:
        return None
    sid, email, idp = (fields.get(k) for k in ("sid", "email", "idp"))
    method = METHODS.get(fields.get("method"))
    auth_time, exp = _seconds(fields.get("auth_time")), _seconds(fields.get("exp"))
    if not (isinstance(sid, str) and sid and isinstance(email, str) and email):
        return None
    if method is None or not (idp is None or isinstance(idp, str)):
        return None
    instant = now.timestamp()
    if auth_time is None or exp is None or exp <= instant or auth_time > instant + SKEW_SECONDS:
        return None
    return Session(
        sid, email, method, idp, *(datetime.fromtimestamp(t, UTC) for t in (auth_time, exp))
    )


def _seconds(value: object) -> int | None:
    """A time in whole seconds between 1970 and 3000, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < LATEST:
        return None
    return value
