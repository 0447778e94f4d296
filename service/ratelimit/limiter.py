"""The check API the endpoints call: admit the request or raise RateLimited (429 + Retry-After).

Keys: `<limit>:<period>:<tenant>:<hmac>`, the HMAC (SHA-256, truncated to 128 bits) under a
key derived from the server secret over `<kind>:<value>` — the client's network, the
normalised email address, the registration id, the issuer, or the tenant for the tenant-wide
tier — so the counters hold no personal data and cannot be tested against a guessed address
without the secret. The client is the socket peer, or the address a trusted proxy forwarded
(`AUTHLEDGER_TRUSTED_PROXIES`, service.http.client_address). An IPv6 client counts by its /64
(one host usually holds the whole prefix); an IPv4-mapped address counts as the IPv4 one; an
unknown or unparsable client address skips the IP tier (spec §10).

A store failure (Postgres down, the table missing, a check slower than STORE_TIMEOUT) is
logged as `ratelimit.store_failed` (limit names and the error's type only) and counted; then
the policy decides: `open` (spec §10's default) admits, `closed` refuses with 429 and
Retry-After FAIL_CLOSED_RETRY_AFTER.

Counts: `counts` (this process's, by result: `admitted`, `refused.<limit>`, `store_failed`),
and the same results passed to `observe` (service.observability.metrics'
`authledger_rate_limit_checks_total`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

import asyncpg
import structlog

from events.clock import Clock, SystemClock
from events.sql import load_queries
from service.crypto.pii import normalise_email
from service.crypto.tokens import RATE_LIMIT_KEY, derive_key, token_hash
from service.domain.errors import ProtocolError
from service.ratelimit.limits import LimitName, RateLimits
from service.ratelimit.store import Hit, WindowStore
from service.ratelimit.window import Window, retry_after

FailurePolicy = Literal["open", "closed"]
# Each with its own tenant budget.
Flow = Literal["anonymous", "verified_email", "id_jag", "service_auth"]
SubjectKind = Literal["ip", "tenant", "registration", "email", "issuer", "subject"]
Check = tuple[LimitName, SubjectKind, str]
STORE_TIMEOUT = 2.0  # seconds; past it the check counts as a store failure
FAIL_CLOSED_RETRY_AFTER = 30
STORE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
REG_Q = load_queries("projections", "registrations.sql")
log = structlog.get_logger("service.ratelimit")

_REFUSED: dict[LimitName, str] = {
    "anonymous_per_ip": "too many anonymous registrations from this address",
    "anonymous_per_tenant": "too many anonymous registrations at this service",
    "identity_per_ip": "too many identity_assertion registrations from this address",
    "verified_email_per_tenant": "too many verified_email registrations at this service",
    "id_jag_per_tenant": "too many ID-JAG registrations at this service",
    "mail_per_recipient": "too many claim e-mails to this address",
    "claim_per_registration": "too many claims for this registration",
    "claim_per_email": "too many claims for this email address",
    "code_per_ip": "too many codes asked for from this address",
    "code_per_registration": "too many codes asked for this registration",
    "complete_per_ip": "too many claim completions from this address",
    "complete_per_registration": "too many claim completions for this registration",
    "revoke_per_issuer": "too many logout tokens from this issuer",
    "token_per_ip": "too many token requests from this address",
    "token_per_subject": "too many tokens for this assertion's subject",
    "revoke_token_per_ip": "too many token revocations from this address",
    "sign_in_per_ip": "too many sign-in links asked for from this address",
    "sign_in_per_tenant": "too many sign-in links asked for at this service",
    "sign_in_use_per_ip": "too many sign-ins from this address",
    "service_auth_per_tenant": "too many service_auth registrations at this service",
    "poll_per_ip": "too many claim polls from this address",
    "refresh_per_ip": "too many refreshes from this address",
}
_TIERS: dict[Flow, tuple[LimitName, LimitName]] = {
    "anonymous": ("anonymous_per_ip", "anonymous_per_tenant"),
    "verified_email": ("identity_per_ip", "verified_email_per_tenant"),
    "id_jag": ("identity_per_ip", "id_jag_per_tenant"),
    "service_auth": ("identity_per_ip", "service_auth_per_tenant"),
}


class RateLimited(ProtocolError):
    """429 `rate_limited`; service.http.errors sends `retry_after` as Retry-After."""

    def __init__(self, retry_after: int, message: str) -> None:
        super().__init__("rate_limited", message)
        self.retry_after = retry_after


def client_network(host: str | None) -> str | None:
    """What the IP tier counts for a client address; None when there is none to count."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimiter:
    """Spec §10's limits over the shared store; does nothing when limits are off."""

    def __init__(
        self,
        limits: RateLimits | None = None,
        store: WindowStore | None = None,
        *,
        secret_key: str = "",
        clock: Clock | None = None,
        failure: FailurePolicy = "open",
        observe: Callable[[str], None] | None = None,
    ) -> None:
        self.limits = limits if store is not None and secret_key else None
        self.failure: FailurePolicy = failure
        self.counts: Counter[str] = Counter()  # admitted, refused.<limit>, store_failed
        self._observe = observe
        self._store = store
        self._key = derive_key(secret_key, RATE_LIMIT_KEY) if secret_key else b""
        self._clock = clock or SystemClock()

    @property
    def enabled(self) -> bool:
        return self.limits is not None

    async def registration(
        self, tenant_id: str, flow: Flow, client_ip: str | None, *, recipient: str | None = None
    ) -> None:
        """E4: per client network, then (verified_email) per recipient of the claim mail,
        then per tenant, each flow with its own tenant budget (security issue 12.5)."""
        if self.limits is None or self._store is None:
            return  # limits off: nothing to count, so no address to parse
        per_ip, per_tenant = _TIERS[flow]
        network = client_network(client_ip)
        checks: list[Check] = [] if network is None else [(per_ip, "ip", network)]
        if flow == "verified_email":
            if recipient is None:
                raise ValueError("a verified_email registration's check needs its recipient")
            checks.append(("mail_per_recipient", "email", normalise_email(recipient)))
        await self.check(tenant_id, [*checks, (per_tenant, "tenant", tenant_id)])

    async def claim_start(
        self, tenant_id: str, claim_token: str, email: str, *, mail: bool = True
    ) -> None:
        """E5: per registration, then per target address (§10's), then the address's claim
        mail budget, shared with E4 verified_email (security issue 12.5). An unknown claim
        token counts against nothing (the command answers 401), so made-up tokens cannot
        spend an address's budget. V2 (`mail=False`) sends no mail: the first two only."""
        if not self.enabled or self._store is None:
            return
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                row = await self._store.pool.fetchrow(
                    REG_Q["by_claim_token"], token_hash(claim_token)
                )
        except STORE_ERRORS as exc:
            self._failed(["claim_per_registration", "claim_per_email", "mail_per_recipient"], exc)
            return
        if row is None or row["tenant_id"] != tenant_id:
            return
        address = normalise_email(email)
        checks: list[Check] = [
            ("claim_per_registration", "registration", row["registration_id"]),
            ("claim_per_email", "email", address),
        ]
        if mail:
            checks.append(("mail_per_recipient", "email", address))
        await self.check(tenant_id, checks)

    async def code(self, tenant_id: str, link_token: str, client_ip: str | None) -> None:
        """E7: per client network, then per registration (when the link is one of ours)."""
        await self._by_token(
            tenant_id, "by_attempt_token", link_token, client_ip,
            ("code_per_ip", "code_per_registration"),
        )  # fmt: skip

    async def completion(self, tenant_id: str, claim_token: str, client_ip: str | None) -> None:
        """E8: per client network, then per registration (when the token is one of ours).
        Made-up tokens spend the address's budget only, so guessing is bounded per address
        and a real registration's budget is not spent by strangers who do not hold it."""
        await self._by_token(
            tenant_id, "by_claim_token", claim_token, client_ip,
            ("complete_per_ip", "complete_per_registration"),
        )  # fmt: skip

    async def user_code(self, tenant_id: str, link_token: str, client_ip: str | None) -> None:
        """V5 and Deny on the v0.6 claim page: E8's buckets, the registration found by the
        link's hash (design section 5.2), so one budget per registration whatever the door."""
        await self._by_token(
            tenant_id, "by_attempt_token", link_token, client_ip,
            ("complete_per_ip", "complete_per_registration"),
        )  # fmt: skip

    async def _by_token(
        self,
        tenant_id: str,
        query: str,
        token: str,
        client_ip: str | None,
        names: tuple[LimitName, LimitName],
    ) -> None:
        if not self.enabled or self._store is None:
            return
        per_ip, per_registration = names
        network = client_network(client_ip)
        checks: list[Check] = [] if network is None else [(per_ip, "ip", network)]
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                row = await self._store.pool.fetchrow(REG_Q[query], token_hash(token))
        except STORE_ERRORS as exc:
            self._failed(list(names), exc)
            return
        if row is not None and row["tenant_id"] == tenant_id:
            checks.append((per_registration, "registration", row["registration_id"]))
        await self.check(tenant_id, checks)

    async def revocation(self, tenant_id: str, issuer: str) -> None:
        """E9: per issuer, called only once the logout token is verified (a forged token
        naming a trusted issuer spends nothing of that issuer's budget)."""
        await self.check(tenant_id, [("revoke_per_issuer", "issuer", issuer)])

    async def per_ip(self, tenant_id: str, name: LimitName, client_ip: str | None) -> None:
        """One limit per client network (V6 before the assertion is verified, V8); nothing
        when the client's address is unknown."""
        network = client_network(client_ip)
        if network is not None:
            await self.check(tenant_id, [(name, "ip", network)])

    async def token_subject(self, tenant_id: str, subject: str) -> None:
        """V6, once the assertion is verified: per its subject (a registration or an ID-JAG
        subject), so a leaked assertion cannot mint without bound until it expires."""
        await self.check(tenant_id, [("token_per_subject", "subject", subject)])

    async def sign_in(self, tenant_id: str, client_ip: str | None, email: str) -> None:
        """v0.6 POST /login: per client network, then the address's mail budget (shared with
        the claim mails: no mail-bombing through the sign-in page), then the tenant."""
        network = client_network(client_ip)
        checks: list[Check] = [] if network is None else [("sign_in_per_ip", "ip", network)]
        checks.append(("mail_per_recipient", "email", normalise_email(email)))
        await self.check(tenant_id, [*checks, ("sign_in_per_tenant", "tenant", tenant_id)])

    async def sign_in_use(self, tenant_id: str, client_ip: str | None) -> None:
        """v0.6 POST /login/email and the OIDC routes: per client network."""
        network = client_network(client_ip)
        if network is not None:
            await self.check(tenant_id, [("sign_in_use_per_ip", "ip", network)])

    async def check(self, tenant_id: str, checks: Sequence[Check]) -> None:
        """Take one hit from each check's bucket, in order, or raise RateLimited naming the
        first that is full; nothing is counted for a refused request."""
        if self.limits is None or self._store is None:
            return
        limits, now = self.limits.of(tenant_id), self._clock.now()
        hits: list[Hit] = []
        names: list[LimitName] = []
        for name, kind, value in checks:
            rate = limits[name]
            if rate is None:
                continue
            bucket = f"{name}:{rate.period}:{tenant_id}:{self._digest(kind, value)}"
            hits.append(Hit(bucket, rate.count, Window.at(now, rate.period)))
            names.append(name)
        if not hits:
            return
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                refusal = await self._store.take(hits, now)
        except STORE_ERRORS as exc:
            self._failed(names, exc)
            return
        if refusal is None:
            self._count("admitted")
            return
        name, hit = names[refusal.index], hits[refusal.index]
        wait = retry_after(hit.limit, refusal.current, refusal.previous, hit.window)
        self._count(f"refused.{name}")
        log.info("ratelimit.refused", limit=name, retry_after=wait)
        raise RateLimited(wait, f"{_REFUSED[name]}; retry after {wait} s")

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        if self._observe is not None:
            self._observe(result)

    def _digest(self, kind: SubjectKind, value: str) -> str:
        message = f"{kind}:{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def _failed(self, names: Sequence[LimitName], exc: BaseException) -> None:
        self._count("store_failed")
        log.warning(
            "ratelimit.store_failed", limits=list(names), error=type(exc).__name__,
            policy=self.failure,
        )  # fmt: skip
        if self.failure == "closed":
            raise RateLimited(
                FAIL_CLOSED_RETRY_AFTER, "rate limiting is unavailable; retry later"
            ) from None
