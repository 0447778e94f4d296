"""The v0.6 door's claim start, for the agent: V1 `service_auth` and V2 `POST
/agent/identity/claim` (docs/design/v06-dialect.md, section 5.2), in the identity family's
shape (service/http/envelopes.py), over service/commands/claim_start.py.

- V1 service_auth: the hint trimmed, a plain e-mail address else 400 `invalid_login_hint`.
  Limits: `identity_per_ip` and `service_auth_per_tenant` (no mail is sent: no recipient's).
- V2: JSON `claim_token` and exactly one of `email` / `login_hint` (O-P), `type` absent or
  one of `login_hint`, `service_auth`, `email`. Limits: E5's `claim_per_registration` and
  `claim_per_email`, counted only for a known token (no mail: not `mail_per_recipient`).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from service.commands.claim_start import register_service_auth, start
from service.commands.context import Caller, Context
from service.domain.errors import ProtocolError
from service.http.authkit import attempt_answer
from service.http.bodies import (
    BODY_LIMIT,
    Email,
    Strict,
    Token,
    Word,
    check_email,
    json_reply,
    read_json,
    timestamp,
    v06_caller,
)
from service.http.v06_docs import IDENTITY_CLAIM_DOC
from service.runtime.resources import Resources
from service.tenancy.config import IDENTITY_CLAIM_PATH

CLAIM_TYPES = ("login_hint", "service_auth", "email")  # O-P


class ClaimBody(Strict, frozen=True):
    """V2: the claim token and the address of the person who will claim (either name)."""

    claim_token: Token
    email: Email | None = None
    login_hint: Email | None = None
    type: Word | None = None


async def service_auth_reply(
    ctx: Context, resources: Resources, who: Caller, hint: str
) -> Response[bytes]:
    """V1 `{type: service_auth, login_hint}`: 200 with the claim handles and the attempt."""
    hint = hint.strip()
    try:
        check_email(hint, "login_hint")
    except ProtocolError:
        raise ProtocolError("invalid_login_hint", "login_hint must be an email address") from None
    await resources.limiter.registration(ctx.tenant.tenant_id, "service_auth", who.client_ip)
    registered = await register_service_auth(ctx, hint, who)
    return json_reply(
        {
            "registration_id": registered.registration_id,
            "registration_type": "service_auth",
            "claim_url": ctx.tenant.claim_endpoint,
            "claim_token": registered.claim_token,
            "claim_token_expires": timestamp(registered.claim_token_expires),
            "post_claim_scopes": list(registered.post_claim_scopes),
            "claim": registered.claim.answer(),
        }
    )


def _address(body: ClaimBody) -> str:
    """The address V2 names, by either name (O-P); `invalid_request` otherwise."""
    if (body.email is None) == (body.login_hint is None):
        raise ProtocolError("invalid_request", "send exactly one of email and login_hint")
    if body.type is not None and body.type not in CLAIM_TYPES:
        raise ProtocolError("invalid_request", f"type must be one of {', '.join(CLAIM_TYPES)}")
    return check_email((body.email or body.login_hint or "").strip(), "email")


async def _authkit_start(
    request: Request[Any, Any, Any],
    ctx: Context,
    resources: Resources,
    claim_token: str,
    email: str,
) -> Response[bytes]:
    """V2 in the AuthKit profile: `{id, type, attempt{verification_uri, expires_at}}`; a
    claimed registration is 409 `already_claimed` (contract [PR28])."""
    who = v06_caller(request)
    await resources.limiter.claim_start(ctx.tenant.tenant_id, claim_token, email, mail=False)
    try:
        opened = await start(ctx, claim_token, email, who)
    except ProtocolError as refused:
        if refused.code != "claimed_or_in_flight":
            raise
        raise ProtocolError("already_claimed", refused.message) from None
    return json_reply(
        {
            "id": opened.registration_id,
            "type": "service_auth",
            "attempt": attempt_answer(opened.claim),
        }
    )


@post(IDENTITY_CLAIM_PATH, summary="V2: start a claim (the v0.6 door)",
      request_max_body_size=BODY_LIMIT, operation_class=IDENTITY_CLAIM_DOC)  # fmt: skip
async def start_claim(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[Context],
    resources: NamedDependency[Resources],
) -> Response[bytes]:
    body = await read_json(request, ClaimBody)
    email = _address(body)
    if ctx.tenant.v06_profile == "authkit":
        return await _authkit_start(request, ctx, resources, body.claim_token, email)
    who = v06_caller(request)
    await resources.limiter.claim_start(ctx.tenant.tenant_id, body.claim_token, email, mail=False)
    opened = await start(ctx, body.claim_token, email, who)
    return json_reply(
        {
            "registration_id": opened.registration_id,
            "claim_attempt_id": opened.claim.attempt_id,
            "status": "initiated",
            "expires_at": timestamp(opened.claim.link_expires_at),
            "claim_attempt": opened.claim.answer(),
        }
    )
