"""The v0.6 door's AuthKit profile for the agent (contract [PR28]; docs/design/v06-dialect.md
sections 5.2 and 12): a tenant whose `V06_PROFILE` is `authkit` answers V1 and V2 at the same
paths in this shape, and serves `POST /agent/identity/claim/complete`. Same commands, same
events (their metadata says dialect `0.6.0+authkit`); only the bodies differ:

- V1 answers nest: `id`, `type`, `identity{assertion, expires_at}`, `scopes{pre_claim,
  post_claim}`, `claim{token, expires_at, url, attempt{verification_uri, expires_at}}`. No
  `user_code` reaches the agent: the person reads it from the confirm page
  (service/http/confirm_page.py) and tells the agent.
- V1 `identity_assertion` (an ID-JAG): `{id, type, identity{…}, scopes}` (a flat list); the
  step-up's 401 carries `id`, `type`, `scopes{post_claim}` and `claim{…attempt}`, and opens a
  `confirm` attempt like service_auth's (service/http/identity_jag.py, `nested`).
- V1 `{type: refresh, refresh_token}`: the next refresh token and a fresh assertion; the old
  token dies (`invalid_refresh_token` for anything not live). Limit `refresh_per_ip`.
- V2 `{type: service_auth, claim_token, login_hint}` (or `email`, O-P): `{id, type,
  attempt{…}}`; 409 `already_claimed` (service/http/identity_claim.py, `attempt_answer`).
- complete `{claim_token, user_code}`: once, `{id, status: "claimed", identity{assertion,
  expires_at, refresh_token{value, expires_at}}}`. Limits: E8's buckets.

Refusals are the identity family's (service/http/envelopes.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency

from service.commands.agent_identity import register_anonymous_v06
from service.commands.authkit import Identity, complete, refresh
from service.commands.claim_start import Handout, register_service_auth
from service.commands.context import Context
from service.domain.errors import ProtocolError
from service.http.authkit_docs import COMPLETE_DOC
from service.http.bodies import (
    BODY_LIMIT,
    Assertion,
    Strict,
    Token,
    Word,
    check_email,
    json_reply,
    read_json,
    timestamp,
    v06_caller,
)
from service.http.identity_jag import identity_assertion
from service.runtime.resources import Resources
from service.tenancy.config import ID_JAG, IDENTITY_COMPLETE_PATH

AnyRequest = Request[Any, Any, Any]
UserCode = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
_NEEDED = {
    "service_auth": ("login_hint",),
    "refresh": ("refresh_token",),
    "identity_assertion": ("assertion_type", "assertion"),
}
NOT_AN_ADDRESS = "login_hint must be an email address"
Hint = Annotated[str, msgspec.Meta(min_length=1, max_length=320)]


class AuthKitBody(Strict, frozen=True):
    """V1 in the AuthKit profile: `type`, and the fields of that type only."""

    type: Word
    login_hint: Hint | None = None  # service_auth
    refresh_token: Token | None = None  # refresh
    assertion_type: Word | None = None  # identity_assertion
    assertion: Assertion | None = None  # identity_assertion (an ID-JAG, at most 8 KiB)


class CompleteBody(Strict, frozen=True):
    claim_token: Token
    user_code: UserCode


def attempt_answer(handout: Handout) -> dict[str, str]:
    return {
        "verification_uri": handout.verification_uri,
        "expires_at": timestamp(handout.link_expires_at),
    }


def _claim(ctx: Context, token: str, expires_at: datetime) -> dict[str, Any]:
    return {"token": token, "expires_at": timestamp(expires_at), "url": ctx.tenant.claim_endpoint}


def _identity(identity: Identity) -> dict[str, Any]:
    token = identity.refresh
    if token.expires_at is None:  # a refresh token always has its end
        raise RuntimeError("a refresh token without an expiry")
    return {
        "assertion": identity.assertion,
        "expires_at": timestamp(identity.assertion_expires),
        "refresh_token": {"value": token.plain, "expires_at": timestamp(token.expires_at)},
    }


async def authkit_identify(
    request: AnyRequest, ctx: Context, resources: Resources
) -> Response[bytes]:
    """V1 of a tenant in the AuthKit profile (service/http/identity.py hands over)."""
    body = await read_json(request, AuthKitBody)
    who, tenant = v06_caller(request), ctx.tenant
    given = {"login_hint": body.login_hint, "refresh_token": body.refresh_token,
             "assertion_type": body.assertion_type, "assertion": body.assertion}  # fmt: skip
    needed = _NEEDED.get(body.type, ())
    for name, value in given.items():
        if (value is not None) != (name in needed):
            verb = "needs" if name in needed else "takes no"
            raise ProtocolError("invalid_request", f"{body.type} {verb} {name}")
    if body.type == "anonymous":
        await resources.limiter.registration(tenant.tenant_id, "anonymous", who.client_ip)
        made = await register_anonymous_v06(ctx, who)
        return json_reply({
            "id": made.registration_id,
            "type": "anonymous",
            "identity": {
                "assertion": made.identity_assertion,
                "expires_at": timestamp(made.assertion_expires),
            },
            "scopes": {
                "pre_claim": list(made.pre_claim_scopes),
                "post_claim": list(made.post_claim_scopes),
            },
            "claim": _claim(ctx, made.claim_token, made.claim_token_expires),
        })  # fmt: skip
    if body.type == "service_auth":
        try:
            hint = check_email((body.login_hint or "").strip(), "login_hint")
        except ProtocolError:
            raise ProtocolError(
                "invalid_login_hint", "login_hint must be an email address"
            ) from None
        await resources.limiter.registration(tenant.tenant_id, "service_auth", who.client_ip)
        pending = await register_service_auth(ctx, hint, who)
        claim = _claim(ctx, pending.claim_token, pending.claim_token_expires)
        return json_reply({
            "id": pending.registration_id,
            "type": "service_auth",
            "scopes": {"pre_claim": [], "post_claim": list(pending.post_claim_scopes)},
            "claim": claim | {"attempt": attempt_answer(pending.claim)},
        })  # fmt: skip
    if body.type == "refresh":
        await resources.limiter.per_ip(tenant.tenant_id, "refresh_per_ip", who.client_ip)
        rotated = await refresh(ctx, body.refresh_token or "", who)
        return json_reply(
            {"id": rotated.registration_id, "type": "refresh", "identity": _identity(rotated)}
        )
    if body.type == "identity_assertion":
        if body.assertion_type != ID_JAG or body.assertion is None:
            raise ProtocolError("invalid_request", f"assertion_type must be {ID_JAG}")
        return await identity_assertion(request, ctx, resources, body.assertion, nested=True)
    raise ProtocolError(
        "invalid_request", "type must be anonymous, service_auth, identity_assertion or refresh"
    )


@post(IDENTITY_COMPLETE_PATH, summary="AuthKit: complete a claim with the person's code",
      request_max_body_size=BODY_LIMIT, operation_class=COMPLETE_DOC)  # fmt: skip
async def complete_claim(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[bytes]:
    if ctx.tenant.v06_profile != "authkit":
        raise ProtocolError("not_found", "this service completes claims through its pages")
    body = await read_json(request, CompleteBody)
    who = v06_caller(request)
    await resources.limiter.completion(ctx.tenant.tenant_id, body.claim_token, who.client_ip)
    done = await complete(ctx, body.claim_token, body.user_code, who)
    return json_reply(
        {"id": done.registration_id, "status": "claimed", "identity": _identity(done)}
    )
