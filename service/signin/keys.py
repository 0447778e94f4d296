"""The keys of the sign-in pages, derived once from the server secret (service/crypto/tokens.py
labels): one seals session cookies, one makes CSRF tokens, one seals an OpenID sign-in's
state. None is retained across a secret rotation: a rotation signs everybody out."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.crypto.tokens import CSRF_KEY, OIDC_STATE_KEY, SESSION_KEY, derive_key


@dataclass(frozen=True)
class SignInKeys:
    session: bytes = field(repr=False)
    csrf: bytes = field(repr=False)
    oidc: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: str | bytes) -> SignInKeys:
        return cls(
            session=derive_key(secret, SESSION_KEY),
            csrf=derive_key(secret, CSRF_KEY),
            oidc=derive_key(secret, OIDC_STATE_KEY),
        )
