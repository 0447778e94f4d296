"""The auth.md's part for the v0.6 door (`/agent/identity`, auth.md 0.6.0; docs/protocol.md
§12): generated from the tenant like the v1 steps, present only while the door is open and
offers one of its flows, and alone after Step 1 when the v1 door is shut. The main profile
(V1-V8); the AuthKit profile's A2 and A4 are service/http/authmd_authkit.py's."""

from __future__ import annotations

from typing import Any

from service.http.authmd_authkit import claim_authkit, register_authkit
from service.http.markdown import codes, example_time, json_block
from service.tenancy.config import CLAIM_GRANT, ID_JAG, JWT_BEARER, Flow, TenantConfig

LINK = "%2Fclaim%3Fclaim_attempt_token%3Dcvt_…"  # the claim page's path, URL-encoded
HEADING = "## The 0.6.0 dialect: `/agent/identity`"
ERROR_ROWS = (
    ("invalid_request", 400, "all", "malformed body or form; fix it first"),
    ("invalid_login_hint", 400, "register", "the hint is no e-mail address; ask the user again"),
    ("anonymous_not_enabled", 400, "register", "that type is off; pick another (A1)"),
    ("service_auth_not_enabled", 400, "register", "that type is off; pick another (A1)"),
    ("identity_assertion_not_enabled", 400, "register", "that type is off; pick another (A1)"),
    ("interaction_required", 401, "register (ID-JAG)",
     "the person must claim first: A4 step 2 with the answer's `claim`"),
    ("login_required", 401, "register (ID-JAG)",
     "sign the user in again at the provider (`max_age` s), mint a new ID-JAG"),
    ("invalid_claim_token", 401, "claim", "unknown, or made at the other door; register again"),
    ("claimed_or_in_flight", 409, "claim", "already claimed; nothing to do"),
    ("claim_expired", 410, "claim", "the registration ended; register again"),
    ("unsupported_grant_type", 400, "token", "send one of `grant_types_supported`"),
    ("invalid_grant", 400, "token", "the assertion is not (or no longer) good: A3"),
    ("authorization_pending", 400, "token (claim grant)", "A4 step 3"),
    ("slow_down", 400, "token (claim grant)", "A4 step 3"),
    ("access_denied", 400, "token (claim grant)", "A4 step 3"),
    ("expired_token", 400, "token (claim grant)", "A4 step 3"),
    ("rate_limited", 429, "all", "wait `Retry-After` seconds, retry"),
    ("not_found", 404, "all", "this door is shut here; use the other one"),
    ("unauthorized", 401, "API", "the token is gone: exchange the assertion again (A3)"),
    ("internal_error", 500, "all", "back off (1 s, 2 s, 4 s …), repeat the same request"),
)  # fmt: skip
ID_JAG_CODES = ("invalid_issuer", "invalid_signature", "expired", "invalid_audience",
                "replay_detected", "missing_verified_email", "invalid_client_id")  # fmt: skip
ERRORS = """### A6. Errors of this dialect

Three shapes, by endpoint: `identity_endpoint` and `claim_endpoint` answer
`{"error", "message", "error_description"}` (the two texts are the same); the token and
revocation endpoints answer RFC 6749's `{"error", "error_description"}`, every answer
`Cache-Control: no-store`; `events_endpoint` (providers only) answers `{"err", "description"}`.
Act on the code. An ID-JAG refused at registration gets the codes v1 uses for it
({id_jag}): mint a fresh ID-JAG; `invalid_issuer` means the operator does not trust your
provider.

| error | HTTP | where | what to do |
|---|---|---|---|
{rows}"""


def render_v06(t: TenantConfig) -> str:
    """The dialect's part: its endpoints, A1 to A6 and its revocation (A7)."""
    rows = "\n".join(
        f"| `{c}` | {status} | {where} | {todo} |" for c, status, where, todo in ERROR_ROWS
    )
    errors = ERRORS.replace("{id_jag}", codes(ID_JAG_CODES)).replace("{rows}", rows)
    authkit = t.v06_profile == "authkit"
    register = register_authkit(t) if authkit else _register(t)
    claim = claim_authkit(t) if authkit else _claim(t)
    parts = [_endpoints(t), _pick(t), register, _exchange(t), claim, _use(t), errors,
             _revocation(t)]  # fmt: skip
    return "\n\n".join(part.strip("\n") for part in parts if part)


def reading_order(t: TenantConfig) -> str:
    """How to read the rest: the v1 steps, the 0.6.0 part, or which of the two."""
    v1 = (
        "Follow the steps in order: **1** discover, **2** pick a method, **3** register, **4** "
        "claim (only when the method needs a person), **5** use the credential."
    )
    if not t.v06_offered:
        return v1
    v06 = "the part *The 0.6.0 dialect* below (A1 to A7)"
    if not t.opens("v1"):
        return f"Start with **Step 1** (discover), then follow {v06}, at `/agent/identity`."
    return (
        "This service speaks two dialects of auth.md to one ledger: `/agent/auth` (0.1.0) and "
        f"`/agent/identity` (0.6.0). Speak the one your client was written for; both start at "
        f"Step 1. For `/agent/auth`: {v1[0].lower()}{v1[1:]} For `/agent/identity`: {v06}."
    )


def metadata_notes(t: TenantConfig) -> str:
    """What 1b's keys are for, those of the open doors only."""
    notes = ["- `issuer`: the value an ID-JAG's `aud` must equal."]
    if t.opens("v1"):
        notes.append(
            "- `agent_auth.skill`: this document. `register_uri`: Step 3. `claim_uri`: Step 4\n"
            "  (`claim_uri` + `/complete` takes the code)."
        )
    if t.v06_offered:
        notes.append(
            "- `identity_endpoint`, `claim_endpoint`, `token_endpoint`, `revocation_endpoint`,\n"
            "  `grant_types_supported`: the 0.6.0 dialect (A1 to A7)."
        )
    keys = [("revocation_uri", t.opens("v1")), ("events_endpoint", t.v06_offered),
            ("events_supported", True)]  # fmt: skip
    providers = ", ".join(f"`{key}`" for key, shown in keys if shown)
    notes += [
        "- `identity_types_supported` and the `*_supported` lists: the only methods and credential"
        "\n  types you may use here; never send one that is missing.",
        f"- {providers}: for agent providers; just note them.",
        "- `jwks_uri`, `introspection_endpoint`: for resource servers checking credentials, not "
        "you."
        if not t.v06_offered
        else "- `jwks_uri`: the keys of access tokens and identity assertions. "
        "`introspection_endpoint`:\n  for resource servers checking credentials, not you.",
    ]
    return "\n".join(notes)


def _endpoints(t: TenantConfig) -> str:
    return f"""{HEADING}

If your client follows auth.md 0.6.0 (it looks for `agent_auth.identity_endpoint` in 1b),
follow this part: the same service, users, scopes and API, through its other door.
Registering never hands you a credential here: it hands you an **identity assertion** signed
by this service, which you trade for an access token at the token endpoint; a person who
claims the registration signs in here and types a code that you pass on. A registration made
at one door is claimed at that door only.

- `identity_endpoint` <{t.identity_endpoint}>: register (A2).
- `claim_endpoint` <{t.claim_endpoint}>: start a claim (A4).
- `token_endpoint` <{t.token_endpoint}>: exchange an assertion (A3), poll a claim (A4);
  `grant_types_supported`: {codes(t.grant_types_supported)}.
- `revocation_endpoint` <{t.revocation_endpoint}>: revoke a token you hold (A5).
- `jwks_uri` <{t.jwks_uri}>: the keys the assertions are signed with (A3).
- `events_endpoint` <{t.events_endpoint}>: for agent providers' revocations; not for you."""


def _pick(t: TenantConfig) -> str:
    when: dict[Flow, str] = {
        "id_jag": "Your agent provider can mint ID-JAGs → `identity_assertion`: an assertion "
        "at once for a user the service knows through the provider.",
        "service_auth": "You know the user's e-mail address → `service_auth`: the person signs "
        + (
            "in here and reads you a code; then the assertion."
            if t.v06_profile == "authkit"
            else "in here and types a code you give them; then the assertion."
        ),
        "anonymous": f"You have nothing → `anonymous`: an assertion at once for "
        f"{codes(t.pre_claim_scopes)}; a person may claim it later.",
    }
    listed = "\n".join(
        f"{i}. {text}"
        for i, text in enumerate((text for f, text in when.items() if t.offers(f)), 1)
    )
    return f"""### A1. Pick a type

Take the first that fits; send only a type listed in `identity_types_supported`:

{listed}"""


def _register(t: TenantConfig) -> str:
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


def _token(t: TenantConfig, scopes: tuple[str, ...]) -> dict[str, Any]:
    return {"access_token": "at_…", "token_type": "Bearer", "expires_in": t.access_token_ttl,
            "scope": " ".join(scopes)}  # fmt: skip


def _exchange(t: TenantConfig) -> str:
    form = f"grant_type={JWT_BEARER.replace(':', '%3A')}&assertion=eyJ…"
    return f"""### A3. Exchange the assertion for an access token

`POST {t.token_endpoint}` with `Content-Type: application/x-www-form-urlencoded`
(RFC 7523):

```http
{form}
```

{json_block(_token(t, t.pre_claim_scopes))}

The scopes are decided at each exchange: before a claim {codes(t.pre_claim_scopes)}, after
it {codes(t.post_claim_scopes)}, for an ID-JAG {codes(t.scopes_supported)}. Each exchange
mints a new token ({t.access_token_ttl} s); exchange again while the assertion lives
(`assertion_expires`, {t.assertion_ttl} s); there is no refresh token. `invalid_grant` means
the assertion is expired, from before a claim, or revoked: anonymous, register again; after
a claim, use the assertion the claim delivered; ID-JAG, present a fresh ID-JAG. You may check
an assertion before trusting it: `typ` `oauth-id-jag+jwt`, the signature with the key of its
`kid` at `jwks_uri`, `iss` = `aud` = `{t.issuer}`, `sub` = your `registration_id`."""


def _claim(t: TenantConfig) -> str:
    started = {"registration_id": "reg_q3L…", "claim_attempt_id": "cla_V7d…",
               "status": "initiated", "expires_at": example_time(t.claim_link_ttl),
               "claim_attempt": _attempt(t)}  # fmt: skip
    poll = f"grant_type={CLAIM_GRANT.replace(':', '%3A')}&claim_token=clm_Zp0…"
    delivered = {**_token(t, t.post_claim_scopes), **_assertion(t)}
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


def _use(t: TenantConfig) -> str:
    return f"""### A5. Use and revoke

Call `{t.resource}` with `Authorization: Bearer <access_token>`, as in Step 1's challenge; a
`401` means the token is gone: exchange the assertion again (A3). When you are done with a
token, `POST {t.revocation_endpoint}` with the form `token=<access_token>`: always `200`, and
the assertion still exchanges (RFC 7009)."""


def _revocation(t: TenantConfig) -> str:
    provider = "" if not t.offers("id_jag") else (
        "Tokens from an ID-JAG end when your provider sends a Security Event Token to "
        f"`{t.events_endpoint}`; its assertions stop exchanging until you present a fresh "
        "ID-JAG. ")  # fmt: skip
    return f"""### A7. Revocation

{provider}Operators of {t.resource_name} can revoke any registration or token; your next call
answers `401` or `invalid_grant`: go back to A2."""
