"""The auth.md (§3.4): the walkthrough an agent follows, generated from the tenant: only the
enabled methods and credential types, the real URLs, scopes and lifetimes; examples use a fixed
clock, so one configuration always renders the same bytes."""

from __future__ import annotations

from typing import Any

from service.http.authmd_v06 import metadata_notes, reading_order, render_v06
from service.http.markdown import codes, example_time, json_block
from service.tenancy.config import ID_JAG, ME_PATH, TenantConfig

METHODS = {"id_jag": "agent provider (ID-JAG)", "verified_email": "verified email",
           "anonymous": "anonymous start",
           "service_auth": "sign-in at the service (service_auth, 0.6.0)"}  # fmt: skip
# Every error code of spec §9, plus `insufficient_scope` (O11), and the retry policy.
ERRORS = """## Errors

Every error body is `{"error": "<code>", "message": "<text>"}`; act on `error`.

| error | HTTP | meaning | what to do |
|---|---|---|---|
| `invalid_request` | 400 | malformed body, bad JWT header or `typ`, no `jti`/`sub` | fix it first |
| `invalid_issuer` | 400 | ID-JAG `iss` missing or not trusted | another method; ask the operator |
| `invalid_signature` | 400 | ID-JAG signature, key or other JWT check failed | mint a new ID-JAG |
| `expired` | 400 | the ID-JAG's `exp` has passed | mint a fresh ID-JAG |
| `invalid_audience` | 400 | ID-JAG `aud` is not the issuer | re-mint with `aud` = issuer |
| `replay_detected` | 400 | this ID-JAG `jti` was used before | mint a fresh ID-JAG, new `jti` |
| `missing_verified_email` | 400 | the ID-JAG has no verified email or phone | use another method |
| `invalid_client_id` | 400 | the ID-JAG's `client_id` is not accepted | use another method |
| `unsupported_credential_type` | 400 | that credential type is not offered | re-read Step 1b |
| `insufficient_user_authentication` | 400 | sign-in below policy | step up at the provider |
| `anonymous_not_enabled` | 400 | anonymous start is off | use another method |
| `verified_email_not_enabled` | 400 | verified email is off | use another method |
| `rate_limited` | 429 | a rate limit was hit | wait `Retry-After` seconds, retry |
| `invalid_claim_token` | 401 | unknown claim token | register again |
| `claimed_or_in_flight` | 409 | email registration, or already claimed | email: Step 4; else stop |
| `claim_expired` | 410 | registration over (page: link window over) | register again |
| `claim_superseded` | 410 | page: the link was replaced by a newer one | user opens newest mail |
| `claim_completed` | 409 | page: already claimed | nothing |
| `otp_not_generated` | 400 | no code shown yet | ask the user to press the button |
| `otp_expired` | 410 | code too old, or voided after misses | new code; dead link: Step 4 |
| `otp_invalid` | 401 | wrong code | ask the user to read it again |
| `previously_claimed` | 409 | already claimed | anonymous: keep the key; email: re-register |
| `unauthorized` | 401 | credential missing, unknown, expired or revoked | drop it; Step 1 |
| `insufficient_scope` | 403 | the credential lacks a scope for this call | anonymous: claim it |
| `internal_error` | 500 | unexpected failure | back off, retry the same request |

Retry policy: `5xx`: back off (1 s, 2 s, 4 s …) and repeat the same request. `4xx`: never
resend unchanged; fix it or follow the table. `401`: drop the credential, go to Step 1.
`429`: wait the `Retry-After` seconds first."""


def render_auth_md(t: TenantConfig) -> str:
    """The whole document; plain Markdown, one trailing newline."""
    parts = [_preamble(t)]
    if t.opens("v1"):
        parts += [_pick(t), _register(t), _claim(t), _use_and_errors(t)]
    if t.v06_offered:
        parts.append(render_v06(t))
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"


def _preamble(t: TenantConfig) -> str:
    links = [("Terms", t.terms_url), ("Privacy", t.privacy_url), ("Contact", t.contact_url)]
    offered = {flow for flow in t.flows if t.opens("v1") or flow != "verified_email"}
    offered -= set() if t.v06_offered else {"service_auth"}
    methods = ", ".join(name for flow, name in METHODS.items() if flow in offered)
    return f"""# {t.resource_name}: how an agent gets a credential

You are an AI agent and want to call the {t.resource_name} API at `{t.resource}`. {reading_order(t)}
This document is generated from the service's configuration: URLs, scopes and lifetimes below
are the real ones. Treat every token, key and code as opaque and secret; never log them.

- Issuer (authorization server): `{t.issuer}`
- Protected resource metadata: <{t.resource_metadata_url}>
- Methods offered: {methods}
- Scopes: {codes(t.scopes_supported)}
{"".join(f"- {label}: <{url}>{chr(10)}" for label, url in links if url)}
## Step 1: Discover

A call to the API without a usable credential answers `401 Unauthorized` with the header
below (plus `error="invalid_token"` when you sent a token). You may also start at 1a.

```http
WWW-Authenticate: Bearer resource_metadata="{t.resource_metadata_url}"
```

### 1a. Protected resource metadata

`GET {t.resource_metadata_url}` (also served at `{t.root_resource_metadata_url}`):

{json_block(t.protected_resource_metadata())}

- `resource`: the API these credentials are for.
- `resource_name`, `resource_logo_uri`: show them to the user when you ask for consent.
- `authorization_servers`: take element 0, the issuer, and fetch its metadata (1b).
- `scopes_supported`: every scope; you never request scopes, your registration's stage
  decides.
- `bearer_methods_supported`: `header`, i.e. `Authorization: Bearer <credential>`.

### 1b. Authorization server metadata

`GET {t.as_metadata_url}`:

{json_block(t.authorization_server_metadata())}

{metadata_notes(t)}
"""


def _pick(t: TenantConfig) -> str:
    when = {
        "id_jag": "Your agent provider gave you a session that can mint ID-JAGs → **agent "
        "provider (ID-JAG)**: a credential at once, no person involved.",
        "verified_email": "You know only the user's email address → **verified email**: the "
        "user reads you a one-time code from an email, then you get the credential.",
        "anonymous": "You have nothing → **anonymous start**: an API key at once with "
        f"{codes(t.pre_claim_scopes)}; a person may claim it later.",
    }
    options = [text for flow, text in when.items() if flow in t.flows]
    listed = "\n".join(f"{i}. {text}" for i, text in enumerate(options, 1))
    return f"""## Step 2: Pick a method

Take the first that fits; only these methods are offered here:

{listed}

Then check in 1b that your `type`, assertion type and credential type are in the matching
`*_supported` lists."""


def _register(t: TenantConfig) -> str:
    kinds = t.identity_credential_types
    stages = [(t.offers("anonymous"), "unclaimed anonymous key", t.pre_claim_scopes),
              (t.claimable, "after a claim", t.post_claim_scopes),
              (t.offers("id_jag"), "ID-JAG", t.scopes_supported)]  # fmt: skip
    by_stage = "; ".join(f"{name}: {codes(scopes)}" for on, name, scopes in stages if on)
    no_consent = " Anonymous start shares no identity: no consent." if t.offers("anonymous") else ""
    parts = [
        f"""## Step 3: Register

Consent gate: before registering with the user's identity, show the user `resource_name`,
`resource_logo_uri` and the scopes you will get; go on only after a yes.{no_consent}

`POST {t.register_uri}` with `Content-Type: application/json`. Scopes by stage: {by_stage}."""
    ]
    if t.offers("id_jag"):
        kind = "api_key" if "api_key" in kinds else kinds[0]
        ask = {"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": "eyJ…",
               "requested_credential_type": kind}  # fmt: skip
        got = {"registration_id": "reg_4be0c1…", "registration_type": "agent-provider",
               **_credential(t, kind, t.scopes_supported)}  # fmt: skip
        contact = f" ({t.contact_url})" if t.contact_url else ""
        parts.append(f"""### Agent provider (ID-JAG)

ID-JAGs are accepted only from trusted providers; the list is not published, so ask the
operator{contact}. The ID-JAG's `aud` must be `{t.issuer}`; a `resource` claim, if present,
must be `{t.resource}`. `requested_credential_type`: {codes(kinds)}.

{json_block(ask)}

{json_block(got)}

Nothing to claim. Each call mints a new credential; there is no refresh token: to extend,
mint a fresh ID-JAG and register again.""")
    if t.offers("verified_email"):
        ask = {"type": "identity_assertion", "assertion_type": "verified_email",
               "assertion": "ana@example.net", "requested_credential_type": kinds[0]}  # fmt: skip
        got = {"registration_id": "reg_8Hs2…", "registration_type": "email-verification",
               **_claim_fields(t)}  # fmt: skip
        parts.append(f"""### Verified email

`requested_credential_type`: {codes(kinds)}. The service emails the user a link at once;
no credential yet: go to Step 4b.

{json_block(ask)}

{json_block(got)}""")
    if t.offers("anonymous"):
        got = {"registration_id": "reg_q3L…", "registration_type": "anonymous",
               **_credential(t, "api_key", t.pre_claim_scopes), **_claim_fields(t)}  # fmt: skip
        parts.append(f"""### Anonymous start

{json_block({"type": "anonymous", "requested_credential_type": "api_key"})}

{json_block(got)}

Use the key now (Step 5). Claiming is optional: it binds the key to a person and widens it
to {codes(t.post_claim_scopes)}; unclaimed, it ends with its registration.""")
    if t.claimable:
        parts.append(f"""Keep `claim_token` in memory only, never on disk, in logs or in
chat: it is returned once and lives {t.registration_ttl} s (`claim_token_expires`).""")
    return "\n\n".join(parts)


def _credential(t: TenantConfig, kind: str, scopes: tuple[str, ...]) -> dict[str, Any]:
    expires = None if kind == "api_key" else example_time(t.access_token_ttl)
    return {"credential_type": kind, "credential": "sk_test_9fK…" if expires is None else "eyJ…",
            "credential_expires": expires, "scopes": list(scopes)}  # fmt: skip


def _claim_fields(t: TenantConfig) -> dict[str, Any]:
    return {"claim_url": t.claim_uri, "claim_token": "clm_Zp0…",
            "claim_token_expires": example_time(t.registration_ttl),
            "post_claim_scopes": list(t.post_claim_scopes)}  # fmt: skip


def _claim(t: TenantConfig) -> str:
    if not t.claimable:
        return "## Step 4: Claim\n\nNot needed: an ID-JAG registration is complete at once."
    parts = ["## Step 4: Claim\n\nA person proves an email address is theirs by reading you a "
             "one-time code."]  # fmt: skip
    if t.offers("anonymous"):
        started = {"registration_id": "reg_q3L…", "claim_attempt_id": "cla_V7d…",
                   "status": "initiated", "expires_at": example_time(t.claim_link_ttl)}  # fmt: skip
        parts.append(f"""### 4a. Trigger (anonymous only)

Ask the user for their email address, then `POST {t.claim_uri}`:

{json_block({"claim_token": "clm_Zp0…", "email": "ana@example.net"})}

{json_block(started)}

The emailed link works for {t.claim_link_ttl} s (`expires_at`). The same email inside that
window returns the same attempt and sends no mail; a new email, or a call after the window,
starts a new attempt and kills the old link and code.""")
    if t.offers("verified_email"):
        parts.append(f"""Verified email: the link went out at registration; go to 4b. If its
window ({t.claim_link_ttl} s) passed unused, `POST {t.claim_uri}` once with the same
`claim_token` and the same `email` to send a fresh link.""")
    parts.append(f"""### 4b. Wait for the code

Tell the user, for example: "I've asked {t.resource_name} to email you a link. Please open it
now, press the button, and read me the 6-digit code." Do not poll; wait for the answer. The
link works {t.claim_link_ttl} s; a code lives {t.otp_ttl} s; each press shows a new code and
voids the previous one. {t.otp_max_misses} wrong tries void a code, a link shows at most
{t.otp_max_mints} codes, and {t.claim_max_misses} wrong tries end the registration.

### 4c. Submit the code

`POST {t.claim_complete_uri}`:

{json_block({"claim_token": "clm_Zp0…", "otp": "042917"})}""")
    if t.offers("anonymous"):
        parts.append(f"""Anonymous: your key now has {codes(t.post_claim_scopes)}; no rotation.

{json_block({"registration_id": "reg_q3L…", "status": "claimed"})}""")
    if t.offers("verified_email"):
        done = {"registration_id": "reg_8Hs2…", "status": "claimed",
                **_credential(t, t.identity_credential_types[0], t.post_claim_scopes)}  # fmt: skip
        parts.append(f"""Verified email: the credential comes once, in this response only.

{json_block(done)}""")
    return "\n\n".join(parts)


def _use_and_errors(t: TenantConfig) -> str:
    kinds = {*t.anonymous_credential_types, *t.identity_credential_types}
    unclaimed = f" (unclaimed anonymous: {t.registration_ttl} s)" if t.offers("anonymous") else ""
    lifetimes = {"api_key": f"`credential_expires` is `null`; lasts until revoked{unclaimed}",
                 "access_token": f"expires {t.access_token_ttl} s after issue "
                 "(`credential_expires`); no refresh: register again"}  # fmt: skip
    listed = "".join(f"- `{k}`: {text}.\n" for k, text in lifetimes.items() if k in kinds)
    provider = "" if not t.offers("id_jag") else (
        f"Credentials from an ID-JAG end when your provider sends a logout token to "
        f"`{t.revocation_uri}`; you never call it. ")  # fmt: skip
    sample = "" if "api.read" not in t.scopes_supported else (
        f"To try it, call the sample resource `GET {t.issuer}{ME_PATH}` (scope `api.read`):\n"
        "it answers which credential you hold, its scopes and its claim state.\n\n")  # fmt: skip
    return f"""## Step 5: Use

Send the credential on every call to `{t.resource}`:

```http
Authorization: Bearer <credential>
```

{sample}{listed}
Any `401` means the credential is gone (expired, revoked or unknown): drop it and restart at
Step 1. Never retry with the same credential.

{ERRORS}

## Revocation

{provider}Operators of {t.resource_name} can revoke any credential at any time. Either way
your next call answers `401`: drop the credential and go back to Step 1."""
