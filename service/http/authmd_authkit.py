"""The auth.md's A2 and A4 for a tenant whose v0.6 door speaks the AuthKit profile (contract
[PR28]; docs/design/v06-dialect.md section 12): nested answers, the code read by the person
from the confirm page and given to the agent, `claim/complete`, rotating refresh tokens.
service/http/authmd_v06.py takes them in place of the main profile's."""

from __future__ import annotations

from typing import Any

from service.http.markdown import codes, example_time, json_block
from service.tenancy.config import ID_JAG, TenantConfig

LINK = "%2Fclaim%2Fconfirm%3Fclaim_attempt_token%3Dcvt_…"  # the confirm page, URL-encoded


def _identity(t: TenantConfig, refresh: bool = False) -> dict[str, Any]:
    identity: dict[str, Any] = {"assertion": "eyJ…", "expires_at": example_time(t.assertion_ttl)}
    if refresh:
        identity["refresh_token"] = {"value": "rt_…", "expires_at": example_time(30 * 86_400)}
    return identity


def _claim(t: TenantConfig, attempt: bool) -> dict[str, Any]:
    claim: dict[str, Any] = {"token": "clm_Zp0…", "expires_at": example_time(t.registration_ttl),
                             "url": t.claim_endpoint}  # fmt: skip
    if attempt:
        claim["attempt"] = {"verification_uri": f"{t.issuer}/login?return_to={LINK}",
                            "expires_at": example_time(t.claim_link_ttl)}  # fmt: skip
    return claim


def register_authkit(t: TenantConfig) -> str:
    parts = [f"### A2. Register\n\n`POST {t.identity_endpoint}` with `Content-Type: "
             "application/json`. Consent gate: before registering with the user's identity, "
             "show the user `resource_name`, `resource_logo_uri` and the scopes you will get; "
             "go on only after a yes."]  # fmt: skip
    if t.offers("anonymous"):
        got = {"id": "reg_q3L…", "type": "anonymous", "identity": _identity(t),
               "scopes": {"pre_claim": list(t.pre_claim_scopes),
                          "post_claim": list(t.post_claim_scopes)},
               "claim": _claim(t, attempt=False)}  # fmt: skip
        parts.append(f"""#### anonymous

{json_block({"type": "anonymous"})}

{json_block(got)}

Exchange `identity.assertion` now (A3). Keep `claim.token` in memory only: claiming (A4) is
optional and widens the scopes to {codes(t.post_claim_scopes)}.""")
    if t.offers("service_auth"):
        got = {"id": "reg_8Hs2…", "type": "service_auth",
               "scopes": {"pre_claim": [], "post_claim": list(t.post_claim_scopes)},
               "claim": _claim(t, attempt=True)}  # fmt: skip
        parts.append(f"""#### service_auth

{json_block({"type": "service_auth", "login_hint": "ana@example.net"})}

{json_block(got)}

No assertion yet: go to A4 step 2 with `claim.attempt`.""")
    if t.offers("id_jag"):
        got = {"id": "reg_4be0c1…", "type": "identity_assertion", "identity": _identity(t),
               "scopes": list(t.scopes_supported)}  # fmt: skip
        ask = {"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": "eyJ…"}
        parts.append(f"""#### identity_assertion (ID-JAG)

Only from providers on this service's trust list; `aud` is `{t.issuer}` (or `{t.resource}`),
`auth_time` at most 3600 s old (else `401` `login_required`).

{json_block(ask)}

{json_block(got)}

A user this service already knows by the verified address must approve first: `401`
`interaction_required` with `id`, `type`, `scopes.post_claim` and `claim` (with `attempt`):
go to A4 step 2.""")
    return "\n\n".join(parts)


def claim_authkit(t: TenantConfig) -> str:
    started = {"id": "reg_q3L…", "type": "service_auth",
               "attempt": _claim(t, attempt=True)["attempt"]}  # fmt: skip
    done = {"id": "reg_q3L…", "status": "claimed", "identity": _identity(t, refresh=True)}
    refreshed = {"id": "reg_q3L…", "type": "refresh", "identity": _identity(t, refresh=True)}
    return f"""### A4. Claim: a person binds the registration

1. Anonymous: ask the user for their e-mail address, then `POST` `claim.url` with
   `{{"type": "service_auth", "claim_token": "clm_Zp0…", "login_hint": "ana@example.net"}}`.
   Each call replaces the attempt.

{json_block(started)}

2. Tell the person: "Open <verification_uri>, sign in to {t.resource_name} as
   ana@example.net, press Authorize and tell me the six-digit code you see." The link lives
   {t.claim_link_ttl} s, the code {t.otp_ttl} s from Authorize.
3. `POST {t.claim_endpoint}/complete` with `{{"claim_token": "clm_Zp0…", "user_code":
   "042917"}}`: once, the assertion (for {codes(t.post_claim_scopes)}) and a refresh token.
   `409` `claim_not_confirmed`: the person has not pressed Authorize yet; `401`
   `invalid_user_code`: ask again; `410` `user_code_expired`: they press Authorize again.

{json_block(done)}

4. When the assertion runs out, `POST {t.identity_endpoint}` with `{{"type": "refresh",
   "refresh_token": "rt_…"}}`: a new assertion and a new refresh token; the old one is dead.
   Each refresh token works once: one used twice ends them all (`400`
   `invalid_refresh_token`: register again).

{json_block(refreshed)}

The anonymous registration's earlier assertion and tokens stop working at the claim."""
