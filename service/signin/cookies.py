"""Cookies of the sign-in pages: their names, their attributes, and values sealed for the
browser to keep.

Names: the plain name while the service's issuer is plain http on a loopback host (`make run`,
the tests), else the `__Host-` form, which a browser takes only over https, with `Secure`,
`Path=/` and no `Domain`, so a neighbouring subdomain cannot plant or shadow it. Every cookie
here is `HttpOnly` and `SameSite=Lax` (it still rides the top-level redirect back from an
OpenID provider, never a cross-site POST), `Path=/`, and `Secure` unless the issuer is
loopback http.

A sealed value is base64url(nonce ‖ AES-256-GCM(JSON fields)), the associated data binding it
to its tenant and its cookie's name, so a value copied to another tenant's host or into
another cookie does not open. Whoever holds the server secret can read and make them; nobody
else can do either, and rotating the secret ends them all.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
NONCE_BYTES = 12
MAX_COOKIE_CHARS = 4096  # what browsers keep per cookie; a longer value is not ours


@dataclass(frozen=True, slots=True)
class CookieSpec:
    """One Set-Cookie; the fields are named as Litestar's `Cookie` takes them."""

    key: str
    value: str
    max_age: int
    secure: bool
    path: str = "/"
    httponly: bool = True
    samesite: Literal["lax", "strict", "none"] = "lax"

    def header(self) -> str:
        """The Set-Cookie header value."""
        parts = [f"{self.key}={self.value}", f"Path={self.path}", f"Max-Age={self.max_age}"]
        parts += ["HttpOnly"] if self.httponly else []
        parts.append(f"SameSite={self.samesite.capitalize()}")
        parts += ["Secure"] if self.secure else []
        return "; ".join(parts)

    def cleared(self) -> CookieSpec:
        """The Set-Cookie that removes this cookie from the browser."""
        return CookieSpec(self.key, "", 0, self.secure, self.path, self.httponly, self.samesite)


def loopback_http(issuer: str) -> bool:
    """Whether the service is reached over plain http on a loopback host."""
    parts = urlsplit(issuer)
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS


def cookie_name(issuer: str, name: str) -> str:
    """`name` on loopback http, `__Host-name` everywhere else."""
    return name if loopback_http(issuer) else f"__Host-{name}"


def cookie(issuer: str, name: str, value: str, max_age: int) -> CookieSpec:
    """The cookie `name` (named for `issuer`) holding `value` for `max_age` seconds."""
    secure = not loopback_http(issuer)
    return CookieSpec(cookie_name(issuer, name), value, max_age, secure)


def _aad(tenant_id: str, name: str) -> bytes:
    return f"{tenant_id}\x00{name}".encode()


def seal(key: bytes, tenant_id: str, name: str, fields: dict[str, Any]) -> str:
    """`fields` as JSON, sealed under `key` for the cookie `name` of `tenant_id`."""
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps(fields, separators=(",", ":")).encode()
    sealed = nonce + AESGCM(key).encrypt(nonce, plain, _aad(tenant_id, name))
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def unseal(key: bytes, tenant_id: str, name: str, value: str | None) -> dict[str, Any] | None:
    """The fields of a value `seal` made for this cookie and tenant; None for anything else
    (absent, too long, not base64url, tampered, another key, tenant or cookie, not an object)."""
    if not value or len(value) > MAX_COOKIE_CHARS or not value.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != value:
            return None  # stray characters or spare bits: not a value `seal` wrote
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(tenant_id, name))
        fields = json.loads(plain)
    except (ValueError, binascii.Error, InvalidTag, RecursionError):
        return None
    return fields if isinstance(fields, dict) else None
