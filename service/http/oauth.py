"""The v0.6 door's OAuth endpoints: V6 (and V7) `POST /oauth2/token`, V8 `POST /oauth2/revoke`.

Both take an urlencoded form only, by RFC 6749 3.2's rules (`read_form`: each parameter at
most once, unknown ones ignored), and answer in the oauth family's shape with `no-store` and
`Pragma: no-cache` on every answer (service/http/envelopes.py).

- V6, the jwt-bearer grant (RFC 7523): `grant_type` missing → `invalid_request`; another grant
  → `unsupported_grant_type` (case 8); the claim grant (V7) is service/http/claim_grant.py's,
  in the main profile only (AuthKit's has none); `assertion`
  required, at most 8 KiB; `resource` optional, an absolute URL without a fragment, then
  ignored. Limits: `token_per_ip` before the assertion is verified, `token_per_subject`
  after. Every refusal of the assertion is `invalid_grant` (case 7).
- V8 (RFC 7009): `token` required, `token_type_hint` ignored whatever it says (O-N). A live
  credential of this tenant ends (reason `agent`); anything else changes nothing; either way
  200 with an empty body. The assertion it came from still exchanges (case 28). Limit:
  `revoke_token_per_ip`.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import MediaType, Request, Response, Router, post
from litestar.di import NamedDependency

from service.commands.context import Context
from service.commands.tokens import exchange, revoke_presented
from service.domain.errors import ProtocolError
from service.http.bodies import BODY_LIMIT, NO_STORE, json_reply, read_form, v06_caller
from service.http.claim_grant import claim_grant_reply
from service.http.envelopes import OAUTH
from service.http.tenancy import door_guard
from service.http.v06_docs import (
    MAX_ASSERTION,
    MAX_TOKEN,
    RESOURCE_PATTERN,
    REVOKE_TOKEN_DOC,
    TOKEN_DOC,
)
from service.runtime.resources import Resources
from service.tenancy.config import CLAIM_GRANT, JWT_BEARER, TOKEN_PATH, TOKEN_REVOKE_PATH

AnyRequest = Request[Any, Any, Any]
MAX_RESOURCE = 2048
_RESOURCE = re.compile(RESOURCE_PATTERN.removesuffix("$") + r"\Z")


@post(TOKEN_PATH, summary="V6: exchange an identity assertion for an access token",
      request_max_body_size=BODY_LIMIT, operation_class=TOKEN_DOC)  # fmt: skip
async def token(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[bytes]:
    form = await read_form(request)
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise ProtocolError("invalid_request", "grant_type is required")
    if grant_type == CLAIM_GRANT and ctx.tenant.v06_profile == "main":
        return await claim_grant_reply(ctx, resources, v06_caller(request), form)
    if grant_type != JWT_BEARER:
        raise ProtocolError("unsupported_grant_type", f"grant_type must be {JWT_BEARER}")
    assertion = form.get("assertion")
    if assertion is None or len(assertion) > MAX_ASSERTION:
        raise ProtocolError("invalid_request", f"assertion is required, at most {MAX_ASSERTION}")
    resource = form.get("resource")
    if resource is not None and (len(resource) > MAX_RESOURCE or not _RESOURCE.match(resource)):
        raise ProtocolError("invalid_request", "resource must be an absolute URL, no fragment")
    who, limiter, tenant = v06_caller(request), resources.limiter, ctx.tenant
    await limiter.per_ip(tenant.tenant_id, "token_per_ip", who.client_ip)

    async def admit(subject: str) -> None:
        await limiter.token_subject(tenant.tenant_id, subject)

    minted = await exchange(ctx, assertion, who, admit)
    return json_reply(
        {
            "access_token": minted.plain,
            "token_type": "Bearer",
            "expires_in": minted.expires_in,
            "scope": " ".join(minted.scopes),
        }
    )


@post(TOKEN_REVOKE_PATH, summary="V8: revoke a token its holder presents (RFC 7009)",
      request_max_body_size=BODY_LIMIT, operation_class=REVOKE_TOKEN_DOC)  # fmt: skip
async def revoke_token(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[bytes]:
    form = await read_form(request)
    presented = form.get("token")
    if presented is None or len(presented) > MAX_TOKEN:
        raise ProtocolError("invalid_request", f"token is required, at most {MAX_TOKEN}")
    who = v06_caller(request)
    await resources.limiter.per_ip(ctx.tenant.tenant_id, "revoke_token_per_ip", who.client_ip)
    await revoke_presented(ctx, presented, who)
    return Response(b"", status_code=200, media_type=MediaType.TEXT, headers=NO_STORE)


def oauth_router() -> Router:
    return Router(
        "/",
        route_handlers=[token, revoke_token],
        tags=["tokens (v0.6)"],
        guards=[door_guard("v06")],
        exception_handlers=OAUTH.handlers(),
    )
