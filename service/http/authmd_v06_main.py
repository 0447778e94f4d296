"""The auth.md's A2 and A4 for a tenant whose v0.6 door speaks the main profile (auth.md
0.6.0; docs/protocol.md §12): flat answers, the code handed to the agent for the person to
type on the claim page, the claim grant polled for the outcome. service/http/authmd_v06.py
places them; the AuthKit profile's are service/http/authmd_authkit.py's."""

from __future__ import annotations

from typing import Any

from service.http.markdown import codes, example_time, json_block
from service.tenancy.config import CLAIM_GRANT, ID_JAG, TenantConfig

LINK = "%2Fclaim%3Fclaim_attempt_token%3Dcvt_…"  # the claim page's path, URL-encoded


def register_main(t: TenantConfig) -> str:
    parts = [f"### A2. Register\n\n`POST {t.identity_endpoint}` with `Content-Type: "
             "application/json`. Consent gate: before registering with the user's identity, "
             "show the user `resource_name`, `resource_logo_uri` and the scopes you will get; "
             "go on only after a yes."]  # fmt: skip
    handles: dict[str, Any] = {"claim_url": t.claim_endpoint, "claim_token": "clm_Zp0…",
               "claim_token_expires": example_time(t.registration_ttl),
               "post_claim_scopes": list(t.post_claim_scopes)}  # fmt: skip
    if t.offers("anonymous"):
        got = {"registration_id": "reg_q3L…", "registration_type": "anonymous",
               **_assertion(t), "pre_claim_scopes": list(t.pre_claim_scopes),
               **handles}  # fmt: skip
        parts.append(f"""#### anonymous

{json_block({"type": "anonymous"})}

{json_block(got)}

Exchange the assertion now (A3). Keep `claim_token` in memory only: it is shown once and
lives {t.registration_ttl} s; claiming (A4) is optional and widens the scopes to
{codes(t.post_claim_scopes)}.""")
    if t.offers("service_auth"):
        got = {"registration_id": "reg_8Hs2…", "registration_type": "service_auth", **handles,
               "claim": _attempt(t)}  # fmt: skip
        parts.append(f"""#### service_auth

{json_block({"type": "service_auth", "login_hint": "ana@example.net"})}

{json_block(got)}

No assertion yet: go to A4 step 2 with `claim`.""")
    if t.offers("id_jag"):
        got = {"registration_id": "reg_4be0c1…", "registration_type": "identity_assertion",
               **_assertion(t), "scopes": list(t.scopes_supported)}  # fmt: skip
        ask = {"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": "eyJ…"}
        parts.append(f"""#### identity_assertion (ID-JAG)

Only from providers on this service's trust list. The ID-JAG's `aud` is `{t.issuer}` (or the
resource `{t.resource}`), and its `auth_time` must be at most 3600 s old.

{json_block(ask)}

{json_block(got)}

A user this service already knows by the ID-JAG's verified address, but not yet through your
provider, must approve first: `401` `interaction_required` whose body holds the same handles
as a service_auth answer (`registration_id`, `claim_token`, `claim`, …): go to A4 step 2;
once claimed, present a fresh ID-JAG. `401` `login_required` (with `max_age`): the user's
sign-in at the provider is too old; sign in again and mint a fresh ID-JAG.""")
    return "\n\n".join(parts)


def _assertion(t: TenantConfig) -> dict[str, Any]:
    return {"identity_assertion": "eyJ…", "assertion_expires": example_time(t.assertion_ttl)}


def _attempt(t: TenantConfig) -> dict[str, Any]:
    return {"user_code": "042917", "expires_in": t.otp_ttl,
            "verification_uri": f"{t.issuer}/login?return_to={LINK}",
            "interval": t.claim_poll_interval}  # fmt: skip


def token_example(t: TenantConfig, scopes: tuple[str, ...]) -> dict[str, Any]:
    return {"access_token": "at_…", "token_type": "Bearer", "expires_in": t.access_token_ttl,
            "scope": " ".join(scopes)}  # fmt: skip


def claim_main(t: TenantConfig) -> str:
    started = {"registration_id": "reg_q3L…", "claim_attempt_id": "cla_V7d…",
               "status": "initiated", "expires_at": example_time(t.claim_link_ttl),
               "claim_attempt": _attempt(t)}  # fmt: skip
    poll = f"grant_type={CLAIM_GRANT.replace(':', '%3A')}&claim_token=clm_Zp0…"
    delivered = {**token_example(t, t.post_claim_scopes), **_assertion(t)}
    return f"""### A4. Claim: a person binds the registration

1. To start a claim (anonymous) or a new code (when one ran out), ask the user for their
   e-mail address, then `POST {t.claim_endpoint}` with
   `{{"claim_token": "clm_Zp0…", "email": "ana@example.net"}}` (`login_hint` may stand for
   `email`). Each call replaces the attempt: the old code and link die.

{json_block(started)}

2. Tell the person, for example: "Open <verification_uri>, sign in to {t.resource_name} as
   ana@example.net, and enter the code 042917." They must sign in with that very address.
   The code lives {t.otp_ttl} s (`expires_in`), the link {t.claim_link_ttl} s (V2's
   `expires_at`).
3. Poll `POST {t.token_endpoint}` (form) every `interval` seconds ({t.claim_poll_interval}),
   never sooner (RFC 8628):

```http
{poll}
```

| answer (400) | what to do |
|---|---|
| `authorization_pending` | wait `interval`, poll again |
| `slow_down` | add 5 s to your interval for good, poll again |
| `access_denied` | the person refused: stop |
| `expired_token` | the code or the registration ran out: step 1 again, or register again |
| `invalid_grant` | claimed, and the claim token has delivered all it will: use what you got |

4. Once the person has typed the code, the poll answers an access token with
   {codes(t.post_claim_scopes)} and a new assertion:

{json_block(delivered)}

Keep that assertion for later exchanges (A3). The claim token delivers at most
{t.claim_deliveries} times within {t.claim_delivery_window} s of the claim; the anonymous
registration's earlier assertion and tokens stop working at the claim."""
