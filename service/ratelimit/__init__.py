"""Rate limits shared by every replica (spec §10, issue 7 item 1).

What is limited, and where (defaults are spec §10's; every one configurable per tenant):

- `anonymous_per_ip` 5/h, `anonymous_per_tenant` 100/h: E4 `type: anonymous`, before the
  command.
- `identity_per_ip` 60/h: E4 `identity_assertion` (verified_email and ID-JAG alike), before
  the command, so before any JWKS fetch. Then each flow's own tenant budget,
  `verified_email_per_tenant` 1000/h and `id_jag_per_tenant` 1000/h (§10's identity_assertion
  number, once per flow since security issue 12.5, so a flood of one flow cannot refuse the
  other; `identity_per_tenant` in a limits file sets both).
- `mail_per_recipient` 5/h: the claim mails one address may be sent, E4 verified_email (after
  the IP tier, before the tenant's) and E5 counting into one bucket per address (security
  issue 12.5: many agents at many addresses cannot bomb one inbox). Keyed like every bucket
  by an HMAC of the normalised address, never the address. A 429 here tells the caller that
  the address was mailed recently; that is the price of a per-recipient bound.
- `claim_per_registration` 3/h, `claim_per_email` 3/h, then `mail_per_recipient`: E5, before
  the command, for a claim token that names a registration of this tenant (an E5 that only
  echoes the current attempt counts too: it needed a mail to exist).
- `revoke_per_issuer` 300/min: E9 and V9 (one budget), once the logout token or SET is
  verified, before it takes effect.

E7 (10 codes per attempt) and E8 (§6.4 misses) are the domain's own rules
(service/domain/registration.py), kept in the event log: they need no counter here. A
refused request writes no event and, at E9, burns no `jti`: the provider may resend it.

Store: the UNLOGGED Postgres table `rate_limit_windows` (migrations/0011_rate_limits.sql),
one row per bucket and fixed window, shared by every process; one function call
(`rate_limit_take`, exact integer arithmetic since migration 0013) per request whatever the
number of tiers. Window: the two-fixed-windows estimate (service.ratelimit.window). Order:
the narrow tier first (IP before tenant, registration before email); the first full tier
refuses and nothing of the request is counted anywhere — not in the refusing tier, not in
the later ones, and the earlier ones get their hit back — so a client refused at its IP
spends none of its tenant's budget, and a client retrying too early does not push its own
Retry-After further out. Retry-After: the whole seconds (at least 1) until the estimate with
one more hit fits again, if nothing else arrives. Keys, fail policy and counters:
service.ratelimit.limiter. Configuration (`AUTHLEDGER_RATE_LIMITS`,
`AUTHLEDGER_RATE_LIMIT_FAILURE`): service.ratelimit.limits.

Also decided:
- A check counts every request that reaches it, whatever the command then answers (an
  ID-JAG with a bad signature counts at E4): the limits bound work and abuse, not successes.
- The limits file is read once, when the process opens its resources (`Resources.open`,
  before any connection): a mistake stops `serve`, `dev` and `worker` with one line naming
  the variable (exit 2). Settings only check that the file exists.
- The client IP is the socket's peer: behind a proxy every client shares the proxy's
  address until the proxy's forwarded address is trusted (not done here).
- At E9 a captured genuine logout token, replayed within its short life, still counts
  against its issuer before the replay check refuses it (the jti is burned in the
  revocation's own transaction, after the limit).
"""

from service.ratelimit.limiter import RateLimited, RateLimiter
from service.ratelimit.limits import RateLimits, load_limits
from service.ratelimit.store import WindowStore

__all__ = ["RateLimited", "RateLimiter", "RateLimits", "WindowStore", "load_limits"]
