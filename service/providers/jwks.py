"""Agent providers' signing keys, fetched from their JWKS and cached (spec §7.4 [OURS]).

Only issuers the caller already trusts are fetched, so an agent cannot make us call a URL of its
choosing. Each keys URL has its own cache entry, and at most one fetch of it is in flight: the
in-flight task is the per-URL lock. Concurrent misses await that one task (shielded, so a caller
that gives up does not cancel the fetch the others wait for), and a slow or dead provider only
holds up the agents of that provider.

When to fetch:
- keys are fresh for the response's `Cache-Control: max-age`, clamped to [`min_age`,
  `max_age`] (no or unusable header: `min_age`);
- a `kid` the fresh keys lack, stale keys, or a previous failure trigger a fetch, but at most
  one per URL every `refetch_interval`: a `kid` still missing after a fetch is therefore refused
  without another request until the interval has passed (the negative cache), and a provider
  that is down is asked again only once per interval;
- a failed refresh keeps the keys we had, stale or not, so an outage of the provider's web
  server does not lock its users out.

Bodies are read as a stream and given up on past `max_bytes`; the whole fetch (connect, headers
and body) has one deadline, `timeout`; redirects are not followed. Keys that are not for
signatures, carry private members, or do not fit an algorithm of `ALGORITHMS` are skipped.

Where a fetch may go (security finding 7): the client connects only to public addresses, or
to those `outbound` (AUTHLEDGER_OUTBOUND_ALLOW) admits, checked on the resolved address when
connecting (service.outbound.transport). A refused fetch is a failed fetch like any other:
logged, counted, retried at most once per `refetch_interval`, and the assertion waiting for
it is refused (`invalid_signature`, spec §7.4).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import httpx
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

from events.clock import Clock
from service.outbound.fetch import FetchFailed, fetch_json, url_refusal
from service.outbound.policy import OutboundPolicy
from service.outbound.transport import Guard, guarded_client
from service.providers.trust import ALGORITHMS, TrustedIssuer

log = structlog.get_logger("service.providers.jwks")

MIN_RSA_BITS = 2048
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
P256_COORDINATE_BYTES = 32
PublicKey = ec.EllipticCurvePublicKey | RSAPublicKey | Ed25519PublicKey | Ed448PublicKey
OKP_CURVES: dict[str, tuple[type[Ed25519PublicKey] | type[Ed448PublicKey], int]] = {
    "Ed25519": (Ed25519PublicKey, 32),
    "Ed448": (Ed448PublicKey, 57),
}


class KeyUnavailable(Exception):
    """No usable key for this `kid`: unknown after a refetch, or the JWKS could not be had."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key from a provider's JWKS; `alg` is the JWK's own, if it names one."""

    kid: str
    public_key: PublicKey
    alg: str | None = None

    def accepts(self, alg: str) -> bool:
        """Whether a JWS header's `alg` may be checked with this key (RFC 7518 key types)."""
        if alg not in ALGORITHMS or (self.alg is not None and self.alg != alg):
            return False
        match alg:
            case "ES256":
                return isinstance(self.public_key, ec.EllipticCurvePublicKey)
            case "RS256" | "PS256":
                return isinstance(self.public_key, RSAPublicKey)
            case "EdDSA":
                return isinstance(self.public_key, Ed25519PublicKey | Ed448PublicKey)
        return False

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """Whether `signature` is this key's `alg` signature of `signing_input`."""
        if not self.accepts(alg):
            return False
        key = self.public_key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                if len(signature) != 2 * P256_COORDINATE_BYTES:
                    return False
                r = int.from_bytes(signature[:P256_COORDINATE_BYTES], "big")
                s = int.from_bytes(signature[P256_COORDINATE_BYTES:], "big")
                key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(SHA256()))
            elif isinstance(key, RSAPublicKey):
                scheme = (
                    padding.PSS(mgf=padding.MGF1(SHA256()), salt_length=SHA256.digest_size)
                    if alg == "PS256"
                    else padding.PKCS1v15()
                )
                key.verify(signature, signing_input, scheme, SHA256())
            else:
                key.verify(signature, signing_input)
        except InvalidSignature:
            return False
        return True


class KeySource(Protocol):
    """Where the verifier gets a trusted issuer's key by `kid` (the JWKS cache, or a fake)."""

    async def key(self, issuer: TrustedIssuer, kid: str) -> VerificationKey: ...


def _b64url(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError("not a base64url string")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def read_jwk(jwk: object) -> VerificationKey | None:
    """The key a JWK describes, or None when it is not one we may verify signatures with."""
    if not isinstance(jwk, dict) or PRIVATE_MEMBERS & jwk.keys():
        return None
    kid, alg, use, ops = jwk.get("kid"), jwk.get("alg"), jwk.get("use"), jwk.get("key_ops")
    if not isinstance(kid, str) or not kid:
        return None
    if use is not None and use != "sig":
        return None
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    if alg is not None and alg not in ALGORITHMS:
        return None
    try:
        public_key = _public_key(jwk)
    except (ValueError, binascii.Error, TypeError):
        return None
    if public_key is None:
        return None
    key = VerificationKey(kid=kid, public_key=public_key, alg=alg)
    usable = ALGORITHMS if alg is None else (alg,)
    return key if any(key.accepts(a) for a in usable) else None


def _public_key(jwk: dict[str, object]) -> PublicKey | None:
    match jwk.get("kty"):
        case "EC" if jwk.get("crv") == "P-256":
            x, y = _b64url(jwk.get("x")), _b64url(jwk.get("y"))
            if len(x) != P256_COORDINATE_BYTES or len(y) != P256_COORDINATE_BYTES:
                return None
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            )
            return numbers.public_key()
        case "RSA":
            n = int.from_bytes(_b64url(jwk.get("n")), "big")
            e = int.from_bytes(_b64url(jwk.get("e")), "big")
            rsa_key = RSAPublicNumbers(e, n).public_key()
            return rsa_key if rsa_key.key_size >= MIN_RSA_BITS else None
        case "OKP" if isinstance(crv := jwk.get("crv"), str) and crv in OKP_CURVES:
            kind, size = OKP_CURVES[crv]
            raw = _b64url(jwk.get("x"))
            return kind.from_public_bytes(raw) if len(raw) == size else None
    return None


def read_jwks(document: object) -> dict[str, VerificationKey]:
    """The usable keys of a JWK Set by kid (the first one wins if a kid repeats)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyUnavailable("the JWKS is not an object with a `keys` array")
    keys: dict[str, VerificationKey] = {}
    for jwk in document["keys"]:
        key = read_jwk(jwk)
        if key is not None:
            keys.setdefault(key.kid, key)
    return keys


def cache_lifetime(cache_control: str | None, floor: timedelta, ceiling: timedelta) -> timedelta:
    """How long a JWKS response stays fresh: its `max-age`, clamped to [floor, ceiling]."""
    max_age: int | None = None
    for directive in (cache_control or "").split(","):
        name, _, value = directive.strip().partition("=")
        if name.strip().lower() == "max-age":
            value = value.strip().strip('"')
            max_age = int(value) if value.isdigit() and len(value) < 12 else None
    if max_age is None:
        return floor
    return min(max(timedelta(seconds=max_age), floor), ceiling)


@dataclass
class _Entry:
    keys: dict[str, VerificationKey] = field(default_factory=dict)
    fresh_until: datetime | None = None  # None: never fetched successfully
    attempted_at: datetime | None = None
    last_error: str | None = None
    refresh: asyncio.Task[None] | None = None  # the one fetch in flight for this URL


class JwksCache:
    """Keys of trusted providers by keys URL and kid; see the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock,
        client: httpx.AsyncClient | None = None,
        allow_loopback_http: bool = False,
        outbound: OutboundPolicy | None = None,
        observe_refused: Callable[[str], None] | None = None,
        timeout: timedelta = timedelta(seconds=5),
        max_bytes: int = 64 * 1024,
        min_age: timedelta = timedelta(minutes=10),
        max_age: timedelta = timedelta(hours=24),
        refetch_interval: timedelta = timedelta(seconds=30),
    ) -> None:
        self.clock = clock
        self.allow_loopback_http = allow_loopback_http
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.min_age = min_age
        self.max_age = max_age
        self.refetch_interval = refetch_interval
        self.guard = Guard(outbound or OutboundPolicy(), "jwks", observe_refused)
        self.fetches: Counter[str] = Counter()  # HTTP requests tried, per keys URL
        self.failures: Counter[str] = Counter()  # of which failed, per keys URL
        self._client = client
        self._owns_client = client is None
        self._entries: dict[str, _Entry] = {}

    async def key(self, issuer: TrustedIssuer, kid: str) -> VerificationKey:
        """The key `kid` of a trusted issuer; KeyUnavailable if there is none to be had."""
        url = issuer.keys_url
        entry = self._entries.get(url)
        if entry is None:  # a URL is checked once: the answer depends on nothing else
            self._check_url(url)
            entry = self._entries[url] = _Entry()
        now = self.clock.now()
        fresh = entry.fresh_until is not None and now < entry.fresh_until
        if fresh and kid in entry.keys:
            return entry.keys[kid]
        if entry.refresh is None and (
            entry.attempted_at is None or now - entry.attempted_at >= self.refetch_interval
        ):
            entry.attempted_at = now
            entry.refresh = asyncio.create_task(self._refresh(url, entry))
        if entry.refresh is not None:
            await asyncio.shield(entry.refresh)
        key = entry.keys.get(kid)
        if key is None:
            reason = f" (last fetch: {entry.last_error})" if entry.last_error else ""
            raise KeyUnavailable(f"no key {kid!r} at {url}{reason}")
        return key

    async def close(self) -> None:
        """Stop fetches in flight; close the HTTP client if this cache created it."""
        tasks = [e.refresh for e in self._entries.values() if e.refresh is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _check_url(self, url: str) -> None:
        refused = url_refusal(url, allow_loopback_http=self.allow_loopback_http)
        if refused is not None:
            raise KeyUnavailable(f"keys URL {refused}")

    async def _refresh(self, url: str, entry: _Entry) -> None:
        try:
            keys, lifetime = await self._fetch(url)
        except KeyUnavailable as exc:
            self.failures[url] += 1
            entry.last_error = str(exc)
            log.warning("jwks.fetch_failed", url=url, error=str(exc), kept=len(entry.keys))
        else:
            entry.keys = keys
            entry.fresh_until = self.clock.now() + lifetime
            entry.last_error = None
            log.info("jwks.fetched", url=url, keys=len(keys), fresh_for=lifetime.total_seconds())
        finally:
            entry.refresh = None

    async def _fetch(self, url: str) -> tuple[dict[str, VerificationKey], timedelta]:
        if self._client is None:
            self._client = guarded_client(self.guard)
        self.fetches[url] += 1
        headers = {"Accept": "application/jwk-set+json, application/json"}
        try:
            document, answer = await fetch_json(
                self._client, "GET", url, what="JWKS", within=self.timeout,
                max_bytes=self.max_bytes, headers=headers,
            )  # fmt: skip
        except FetchFailed as exc:
            raise KeyUnavailable(str(exc)) from None
        lifetime = cache_lifetime(answer.get("cache-control"), self.min_age, self.max_age)
        return read_jwks(document), lifetime
