"""The auth.md's part for the v0.6 door (`/agent/identity`, auth.md 0.6.0; docs/protocol.md
§12): generated from the tenant like the v1 steps, present only while the door is open and
offers one of its flows, and alone after Step 1 when the v1 door is shut. This module holds
the frame both profiles share (the endpoints, A1, A3, A5, A7, and what Step 1 says of this
part); A2 and A4 are the tenant's profile's (service/http/authmd_v06_main.py,
service/http/authmd_authkit.py), A6 is service/http/authmd_v06_errors.py's."""

from __future__ import annotations

from service.http.authmd_authkit import claim_authkit, register_authkit
from service.http.authmd_v06_errors import render_errors
from service.http.authmd_v06_main import claim_main, register_main, token_example
from service.http.markdown import codes, json_block
from service.tenancy.config import JWT_BEARER, Flow, TenantConfig

HEADING = "## The 0.6.0 dialect: `/agent/identity`"


def render_v06(t: TenantConfig) -> str:
    """The dialect's part: its endpoints, A1 to A6 and its revocation (A7)."""
    authkit = t.v06_profile == "authkit"
    register = register_authkit(t) if authkit else register_main(t)
    claim = claim_authkit(t) if authkit else claim_main(t)
    parts = [_endpoints(t), _pick(t), register, _exchange(t), claim, _use(t), render_errors(t),
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
    authkit = t.v06_profile == "authkit"
    ceremony = "reads you a code from the page" if authkit else "types a code that you pass on"
    refresh = ",\n  refresh an assertion (A4 step 4)" if authkit else ""
    complete = ";\n  `/complete` takes the person's code" if authkit else ""
    poll = "" if authkit else ", poll a claim (A4)"
    return f"""{HEADING}

If your client follows auth.md 0.6.0 (it looks for `agent_auth.identity_endpoint` in 1b),
follow this part: the same service, users, scopes and API, through its other door.
Registering never hands you a credential here: it hands you an **identity assertion** signed
by this service, which you trade for an access token at the token endpoint; a person who
claims the registration signs in here and {ceremony}.
A registration made at one door is claimed at that door only.

- `identity_endpoint` <{t.identity_endpoint}>: register (A2){refresh}.
- `claim_endpoint` <{t.claim_endpoint}>: start a claim (A4){complete}.
- `token_endpoint` <{t.token_endpoint}>: exchange an assertion (A3){poll};
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


def _exchange(t: TenantConfig) -> str:
    form = f"grant_type={JWT_BEARER.replace(':', '%3A')}&assertion=eyJ…"
    if t.v06_profile == "authkit":
        lives = (
            f"(`identity.expires_at`, {t.assertion_ttl} s); after a claim, refresh it (A4 step "
            "4).\n`invalid_grant` means the assertion is expired, from before a claim, or "
            "revoked: anonymous,\nregister again; after a claim, refresh; ID-JAG, present a "
            "fresh ID-JAG."
        )
    else:
        lives = (
            f"(`assertion_expires`, {t.assertion_ttl} s); there is no refresh token. "
            "`invalid_grant` means\nthe assertion is expired, from before a claim, or revoked: "
            "anonymous, register again; after\na claim, use the assertion the claim delivered; "
            "ID-JAG, present a fresh ID-JAG."
        )
    return f"""### A3. Exchange the assertion for an access token

`POST {t.token_endpoint}` with `Content-Type: application/x-www-form-urlencoded`
(RFC 7523):

```http
{form}
```

{json_block(token_example(t, t.pre_claim_scopes))}

The scopes are decided at each exchange: before a claim {codes(t.pre_claim_scopes)}, after
it {codes(t.post_claim_scopes)}, for an ID-JAG {codes(t.scopes_supported)}. Each exchange
mints a new token ({t.access_token_ttl} s); exchange again while the assertion lives
{lives} You may check
an assertion before trusting it: `typ` `oauth-id-jag+jwt`, the signature with the key of its
`kid` at `jwks_uri`, `iss` = `aud` = `{t.issuer}`, `sub` = your `registration_id`."""


def _use(t: TenantConfig) -> str:
    refresh = (
        "\n`token=<refresh_token>` ends a refresh token the same way (register again after it)."
        if t.v06_profile == "authkit"
        else ""
    )
    return f"""### A5. Use and revoke

Call `{t.resource}` with `Authorization: Bearer <access_token>`, as in Step 1's challenge; a
`401` means the token is gone: exchange the assertion again (A3). When you are done with a
token, `POST {t.revocation_endpoint}` with the form `token=<access_token>`: always `200`, and
the assertion still exchanges (RFC 7009).{refresh}"""


def _revocation(t: TenantConfig) -> str:
    provider = "" if not t.offers("id_jag") else (
        "Tokens from an ID-JAG end when your provider sends a Security Event Token to "
        f"`{t.events_endpoint}`; its assertions stop exchanging until you present a fresh "
        "ID-JAG. ")  # fmt: skip
    return f"""### A7. Revocation

{provider}Operators of {t.resource_name} can revoke any registration or token; your next call
answers `401` or `invalid_grant`: go back to A2."""
