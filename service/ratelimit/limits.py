"""Which limits apply: spec §10's numbers, or a TOML file of them per tenant.

`AUTHLEDGER_RATE_LIMITS` is `on` (the spec's numbers), `off` (none; benchmarks) or the path
of a file like this one, where every key is optional (a missing one keeps the spec's
number), `"off"` turns one limit off, and a tenant's table is laid over `[default]`:

    [default]
    anonymous_per_ip = "5/h"
    verified_email_per_tenant = "2000/h"
    mail_per_recipient = "3/h"

    [tenants.acme]
    anonymous_per_ip = "off"
    revoke_per_issuer = "600/min"

A rate is `<count>/<period>` with the period `s`, `min`, `h` or `d` (or spelt out, singular
or plural), optionally multiplied: `100/15min`. Anything else stops start-up with one line
naming the variable, the file, the table and the key. `identity_per_tenant`, the name of the
tenant budget verified_email and ID-JAG shared before 2026-12-06, still reads: it sets both
flows' own budgets (a flow's own name, in the same table, wins).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

from service.settings import PREFIX, ConfigError

LimitName = Literal[
    "anonymous_per_ip",  # E4 anonymous, per client IP
    "anonymous_per_tenant",  # E4 anonymous, the whole tenant
    "identity_per_ip",  # E4 identity_assertion (verified_email and ID-JAG), per client IP
    "verified_email_per_tenant",  # E4 verified_email, the whole tenant (its own budget)
    "id_jag_per_tenant",  # E4 ID-JAG, the whole tenant (its own budget)
    "mail_per_recipient",  # claim mail (E4 verified_email and E5), per recipient address
    "claim_per_registration",  # E5, per registration
    "claim_per_email",  # E5, per target address
    "code_per_ip",  # E7, per client IP
    "code_per_registration",  # E7, per registration
    "complete_per_ip",  # E8, per client IP
    "complete_per_registration",  # E8, per registration
    "revoke_per_issuer",  # E9, per verified issuer
    "token_per_ip",  # V6 jwt-bearer, per client IP, before the assertion is verified
    "token_per_subject",  # V6 jwt-bearer, per verified assertion subject
    "revoke_token_per_ip",  # V8, per client IP
    "sign_in_per_ip",  # v0.6 POST /login (a sign-in link mailed), per client IP
    "sign_in_per_tenant",  # v0.6 POST /login, the whole tenant
    "sign_in_use_per_ip",  # v0.6 POST /login/email and the OIDC routes, per client IP
    "service_auth_per_tenant",  # V1 service_auth, the whole tenant (its own budget)
    "poll_per_ip",  # V7 claim grant polls, per client IP
    "refresh_per_ip",  # V1 `type: refresh` (the AuthKit profile), per client IP
]
LIMIT_NAMES: tuple[LimitName, ...] = get_args(LimitName)
VARIABLE = PREFIX + "RATE_LIMITS"
MAX_PERIOD = 7 * 86_400
MAX_COUNT = 1_000_000_000
_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3_600, "hour": 3_600, "hours": 3_600,
    "d": 86_400, "day": 86_400, "days": 86_400,
}  # fmt: skip
_RATE = re.compile(r"(\d+)\s*/\s*(\d*)\s*([a-z]+)")


class LimitsError(ValueError):
    """A mistake in a limits file or rate; the message names where."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` hits per `period` seconds (a sliding window)."""

    count: int
    period: int

    def __str__(self) -> str:
        return f"{self.count}/{self.period}s"


SPEC_LIMITS: Mapping[LimitName, Rate] = {
    "anonymous_per_ip": Rate(5, 3_600),
    "anonymous_per_tenant": Rate(100, 3_600),
    "identity_per_ip": Rate(60, 3_600),
    # Ours (security issue 12.5): §10's identity_assertion tenant number, once per flow, so
    # one flow's flood cannot shut the other out; and a few claim mails per address.
    "verified_email_per_tenant": Rate(1_000, 3_600),
    "id_jag_per_tenant": Rate(1_000, 3_600),
    "mail_per_recipient": Rate(5, 3_600),
    "claim_per_registration": Rate(3, 3_600),
    "claim_per_email": Rate(3, 3_600),
    # Ours (security issue 12.1): a person mints a few codes, an agent completes a few times.
    "code_per_ip": Rate(30, 3_600),
    "code_per_registration": Rate(15, 3_600),
    "complete_per_ip": Rate(60, 3_600),
    "complete_per_registration": Rate(30, 3_600),
    "revoke_per_issuer": Rate(300, 60),
    # The v0.6 door's (docs/design/v06-dialect.md, section 5.2): an assertion re-exchanges
    # until it expires (case 6), bounded per subject; forged ones spend their sender's budget.
    "token_per_ip": Rate(600, 3_600),
    "token_per_subject": Rate(60, 3_600),
    "revoke_token_per_ip": Rate(600, 3_600),
    # The v0.6 sign-in pages (docs/design/v06-dialect.md, section 5.2): a person asks for a
    # few links and follows a few, a mail-bombing run is also held by mail_per_recipient.
    "sign_in_per_ip": Rate(10, 3_600),
    "sign_in_per_tenant": Rate(1_000, 3_600),
    "sign_in_use_per_ip": Rate(60, 3_600),
    "service_auth_per_tenant": Rate(1_000, 3_600),
    "poll_per_ip": Rate(720, 3_600),  # one poll every 5 s, all hour long
    "refresh_per_ip": Rate(120, 3_600),  # an assertion lives an hour: a refresh now and then
}
TenantLimits = Mapping[LimitName, Rate | None]  # None: that limit is off
# Older names a limits file may still use, and the limits each one sets.
ALIASES: Mapping[str, tuple[LimitName, ...]] = {
    "identity_per_tenant": ("verified_email_per_tenant", "id_jag_per_tenant"),
}


@dataclass(frozen=True)
class RateLimits:
    """The limits of every tenant: `default`, and the tenants the file names."""

    default: TenantLimits = field(default_factory=lambda: dict(SPEC_LIMITS))
    tenants: Mapping[str, TenantLimits] = field(default_factory=dict)

    def of(self, tenant_id: str) -> TenantLimits:
        return self.tenants.get(tenant_id, self.default)


def parse_rate(raw: object) -> Rate | None:
    """`"5/h"` → Rate(5, 3600); `"off"` → None; LimitsError with the reason otherwise."""
    if not isinstance(raw, str):
        raise LimitsError(f"expected a string like '5/h' or 'off', got {raw!r}")
    text = raw.strip().lower()
    if text == "off":
        return None
    found = _RATE.fullmatch(text)
    if found is None or found[3] not in _UNITS:
        raise LimitsError(
            f"expected '<count>/<period>' like '5/h' or '300/min', or 'off'; got {raw!r}"
        )
    count, multiple = int(found[1]), int(found[2] or 1)
    period = multiple * _UNITS[found[3]]
    if not 1 <= count <= MAX_COUNT:
        raise LimitsError(f"the count must be between 1 and {MAX_COUNT}, got {raw!r}")
    if not 1 <= period <= MAX_PERIOD:
        raise LimitsError(f"the period must be between 1 s and 7 days, got {raw!r}")
    return Rate(count, period)


def parse_limits(text: str) -> RateLimits:
    """A limits file's text; LimitsError naming the table and key of the first mistake."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LimitsError(f"not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"default", "tenants"})
    if unknown:
        raise LimitsError(f"unknown table or key {unknown[0]!r}; use [default] and [tenants.<id>]")
    default = _table(document.get("default", {}), SPEC_LIMITS, "[default]")
    tenants_table = document.get("tenants", {})
    if not isinstance(tenants_table, dict):
        raise LimitsError("tenants must be tables: [tenants.<tenant id>]")
    tenants = {
        str(tenant_id): _table(table, default, f"[tenants.{tenant_id}]")
        for tenant_id, table in tenants_table.items()
    }
    return RateLimits(default, tenants)


def _table(table: object, base: TenantLimits, where: str) -> TenantLimits:
    if not isinstance(table, dict):
        raise LimitsError(f"{where} must be a table")
    limits = dict(base)
    # Aliases first, so that a flow's own name in the same table wins over the older one.
    for key, raw in sorted(table.items(), key=lambda item: item[0] not in ALIASES):
        if key not in LIMIT_NAMES and key not in ALIASES:
            raise LimitsError(f"{where} {key}: unknown limit; known: {', '.join(LIMIT_NAMES)}")
        try:
            rate = parse_rate(raw)
        except LimitsError as exc:
            raise LimitsError(f"{where} {key}: {exc}") from None
        names = ALIASES[key] if key in ALIASES else (cast(LimitName, key),)
        for name in names:
            limits[name] = rate
    return limits


def load_limits(setting: str) -> RateLimits | None:
    """The limits `AUTHLEDGER_RATE_LIMITS` asks for (None when `off`); ConfigError, one line
    naming the variable, when its file cannot be read or is wrong."""
    if setting == "off":
        return None
    if setting == "on":
        return RateLimits()
    try:
        text = Path(setting).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{VARIABLE}: cannot read {setting}: {exc}") from None
    try:
        return parse_limits(text)
    except LimitsError as exc:
        raise ConfigError(f"{VARIABLE}: {setting}: {exc}") from None
