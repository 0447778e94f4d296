"""What the service knows of a trusted agent provider, and what a verified JWT from one says.

`TrustedIssuer` is the current state of one trust-list entry (folded from `issuer.*` events);
`VerifiedAssertion` and `VerifiedLogout` are the claims of an ID-JAG or a logout token that
passed every check of spec §7.3 / §8 except the replay check, which needs the shared store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

ALGORITHMS: tuple[str, ...] = ("ES256", "RS256", "PS256", "EdDSA")  # never none, never HMAC
SKEW_SECONDS = 60  # clock skew on exp / iat / nbf, and on how long a jti is remembered


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    issuer: str  # exactly as the provider writes `iss`
    jwks_uri: str | None = None  # pinned; else `<issuer>/.well-known/jwks.json`
    algorithms: tuple[str, ...] = ALGORITHMS  # a subset of ALGORITHMS
    display_name: str | None = None
    link_by_verified_email: bool = False  # §7.5 step 2 (O18); opt-in (issue 12, finding 2)
    client_ids: tuple[str, ...] = ()  # pinned CIMD URLs accepted as `client_id` besides `iss`
    required_amr: tuple[str, ...] = ()  # every one must be in the ID-JAG's `amr`

    @property
    def keys_url(self) -> str:
        return self.jwks_uri or f"{self.issuer.rstrip('/')}/.well-known/jwks.json"


TrustLookup = Callable[[str], Awaitable[TrustedIssuer | None]]


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    """An ID-JAG that passed §7.3; `email`/`phone_number` only when verified."""

    issuer: str
    subject: str
    audience: str
    jti: str
    client_id: str
    issued_at: datetime
    expires_at: datetime
    key_id: str
    algorithm: str
    email: str | None = None
    phone_number: str | None = None
    name: str | None = None
    amr: tuple[str, ...] = ()
    auth_time: datetime | None = None
    agent_platform: str | None = None
    agent_context_id: str | None = None

    @property
    def remember_until(self) -> datetime:
        """How long the `(iss, jti)` replay entry must live: exp + skew."""
        return self.expires_at + timedelta(seconds=SKEW_SECONDS)


@dataclass(frozen=True, slots=True)
class VerifiedLogout:
    """A logout token that passed §8 [OURS]."""

    issuer: str
    subject: str
    audience: str
    jti: str
    issued_at: datetime
    remember_until: datetime  # min(exp, iat + 300 s) + skew
    event: str  # the revocation event URI it carried
