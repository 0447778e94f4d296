"""Cross-site request forgery on the sign-in and claim pages.

Every form carries `csrf` = HMAC-SHA256(CSRF key, purpose ‖ binding), truncated to 128 bits
in hex: the binding is the session's `sid` once the person is signed in, and before that
(`/login`, `/login/email`) the value of a random `authledger_csrf` cookie the GET set
(HttpOnly, Lax, an hour). A token is good for one purpose (one form) and one binding, so a
token lifted from one form or session fails everywhere else, and a forger who can neither read
the cookie nor the key cannot make one.

Independently, `cross_site_refusal` turns away a state-changing request a browser marks as
coming from another site: `Sec-Fetch-Site: cross-site`, or an `Origin` that is present and not
the issuer's (`Origin: null` included, but for one case: a browser posting a form of our own
page says `Origin: null` because the page's `Referrer-Policy: no-referrer` makes it hide the
origin (Fetch, "serializing a request origin"), and then says `Sec-Fetch-Site: same-origin`,
a header no page can set; the headless Chromium test found that every real browser's sign-in
was refused). Absent headers pass: old browsers and non-browser clients send neither, and the
token check still holds.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

from events.ids import random_token
from service.signin.cookies import CookieSpec, cookie
from service.signin.keys import SignInKeys

CSRF_COOKIE = "authledger_csrf"
CSRF_COOKIE_TTL = 3600
TOKEN_HEX = 32  # 128 bits
DEFAULT_PORTS = {"http": 80, "https": 443}


def csrf_token(keys: SignInKeys, purpose: str, binding: str) -> str:
    """The token a form for `purpose` carries for `binding` (a session's sid, or the
    pre-session cookie's value)."""
    if not purpose or not binding:
        raise ValueError("a CSRF token needs a purpose and a binding")
    message = f"{purpose}\x00{binding}".encode()
    return hmac.new(keys.csrf, message, hashlib.sha256).hexdigest()[:TOKEN_HEX]


def csrf_ok(keys: SignInKeys, purpose: str, binding: str | None, presented: str | None) -> bool:
    """Whether `presented` is the token for `purpose` and `binding` (constant-time); never
    without a binding (no session and no pre-session cookie)."""
    if not binding or not presented or not purpose:
        return False
    expected = csrf_token(keys, purpose, binding)
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))


def new_pre_session_value() -> str:
    """A fresh value for the pre-session CSRF cookie (`csr_` + 128 random bits)."""
    return random_token("csr_", 16)


def pre_session_cookie(issuer: str, value: str) -> CookieSpec:
    """The Set-Cookie of the pre-session CSRF cookie, for an hour."""
    return cookie(issuer, CSRF_COOKIE, value, CSRF_COOKIE_TTL)


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of `url` as a browser writes `Origin`: lower case, the
    scheme's default port left out."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return ""
    host = f"[{host}]" if ":" in host else host
    shown = "" if port is None or port == DEFAULT_PORTS.get(scheme) else f":{port}"
    return f"{scheme}://{host}{shown}"


def cross_site_refusal(headers: Mapping[str, str], issuer: str) -> str | None:
    """Why a form post with these request headers is refused as cross-site, or None."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get("sec-fetch-site", "").strip().lower() == "cross-site":
        return "the browser says the request comes from another site"
    origin = lowered.get("origin")
    if origin is None:
        return None
    origin = origin.strip().lower()
    if origin == "null" and lowered.get("sec-fetch-site", "").strip().lower() == "same-origin":
        return None  # our own page's form, its origin hidden by our no-referrer policy
    if origin != origin_of(issuer):
        return "the request's Origin is not this service"
    return None
