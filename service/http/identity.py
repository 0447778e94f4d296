"""V1 `POST /agent/identity`: registering an agent at the v0.6 door (design section 5.2).

The body names its `type`; the fields of the other types are refused (`invalid_request`).
`anonymous` registers at once (service/commands/agent_identity.py) under E4 anonymous's own
rate-limit buckets (one budget whatever the door); `service_auth` and V2 (the claim start)
are service/http/identity_claim.py's, `identity_assertion` (an ID-JAG) is
service/http/identity_jag.py's. Answers and refusals are the identity family's
(service/http/envelopes.py); a tenant that keeps the v0.6 door shut answers 404 `not_found`
before anything is read.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, post
from litestar.di import NamedDependency

from service.commands.agent_identity import register_anonymous_v06
from service.commands.context import Context
from service.domain.errors import ProtocolError
from service.http.authkit import authkit_identify, complete_claim
from service.http.bodies import (
    BODY_LIMIT,
    Assertion,
    Strict,
    Word,
    json_reply,
    read_json,
    timestamp,
    v06_caller,
)
from service.http.envelopes import IDENTITY
from service.http.identity_claim import service_auth_reply, start_claim
from service.http.identity_jag import identity_assertion
from service.http.tenancy import door_guard
from service.http.v06_docs import IDENTITY_DOC
from service.runtime.resources import Resources
from service.tenancy.config import ID_JAG, IDENTITY_PATH

Hint = Annotated[str, msgspec.Meta(min_length=1, max_length=320)]


class IdentityBody(Strict, frozen=True):
    """V1: `type`, and the fields of that type only."""

    type: Word
    login_hint: Hint | None = None  # service_auth
    assertion_type: Word | None = None  # identity_assertion
    assertion: Assertion | None = None  # identity_assertion (an ID-JAG, at most 8 KiB)


@post(IDENTITY_PATH, summary="V1: register an agent (the v0.6 door)",
      request_max_body_size=BODY_LIMIT, operation_class=IDENTITY_DOC)  # fmt: skip
async def identify(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[Context],
    resources: NamedDependency[Resources],
) -> Response[bytes]:
    if ctx.tenant.v06_profile == "authkit":
        return await authkit_identify(request, ctx, resources)
    body = await read_json(request, IdentityBody)
    who = v06_caller(request)
    if body.type == "anonymous":
        _only(body, "anonymous")
        await resources.limiter.registration(ctx.tenant.tenant_id, "anonymous", who.client_ip)
        registered = await register_anonymous_v06(ctx, who)
        return json_reply(
            {
                "registration_id": registered.registration_id,
                "registration_type": "anonymous",
                "identity_assertion": registered.identity_assertion,
                "assertion_expires": timestamp(registered.assertion_expires),
                "pre_claim_scopes": list(registered.pre_claim_scopes),
                "claim_url": ctx.tenant.claim_endpoint,
                "claim_token": registered.claim_token,
                "claim_token_expires": timestamp(registered.claim_token_expires),
                "post_claim_scopes": list(registered.post_claim_scopes),
            }
        )
    if body.type == "service_auth":
        _only(body, "service_auth", "login_hint")  # so login_hint is present
        return await service_auth_reply(ctx, resources, who, body.login_hint or "")
    if body.type == "identity_assertion":
        _only(body, "identity_assertion", "assertion_type", "assertion")
        if body.assertion_type != ID_JAG or body.assertion is None:
            raise ProtocolError("invalid_request", f"assertion_type must be {ID_JAG}")
        return await identity_assertion(request, ctx, resources, body.assertion)
    raise ProtocolError(
        "invalid_request", "type must be anonymous, service_auth or identity_assertion"
    )


_OPTIONAL = ("login_hint", "assertion_type", "assertion")


def _only(body: IdentityBody, kind: str, *needed: str) -> None:
    """`needed` present, the other types' fields absent; `invalid_request` otherwise."""
    for name in _OPTIONAL:
        present = getattr(body, name) is not None
        if present != (name in needed):
            verb = "needs" if name in needed else "takes no"
            raise ProtocolError("invalid_request", f"{kind} registration {verb} {name}")


def identity_router() -> Router:
    return Router(
        "/",
        route_handlers=[identify, start_claim, complete_claim],
        tags=["registration (v0.6)"],
        guards=[door_guard("v06")],
        exception_handlers=IDENTITY.handlers(),
    )
