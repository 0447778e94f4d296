"""V1 `POST /agent/identity` with `type: identity_assertion` (an ID-JAG): the answers of the
branch the route module (service/http/identity.py) hands over to (design section 5.2).

- Clean or Provision: 200 with the subject's deterministic `registration_id`, its
  service-signed `identity_assertion`, `assertion_expires` and every scope.
- StepUp: 401 `interaction_required` with an `AgentAuth` challenge; the body carries, top
  level (stella/stella PR #782's review), the step-up's handles and, inside `claim`, the
  ceremony's fields for the agent to pass on. It is the one 401 that writes: the ceremony.
- `auth_time` missing, stale or ahead: 401 `login_required` with the challenge's and the
  body's `max_age`; nothing written.

Limits: E4 ID-JAG's buckets (one budget whatever the door), before anything is verified.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response

from service.commands.context import Context
from service.commands.identity_v06 import LoginRequired, Served, SteppedUp, register_identity_v06
from service.http.bodies import json_reply, timestamp, v06_caller
from service.http.envelopes import IDENTITY
from service.observability.request_outcome import note_refusal
from service.runtime.resources import Resources

REGISTRATION_TYPE = "identity_assertion"
STEP_UP_MESSAGE = (
    "this identity matches an existing account: its owner must sign in at verification_uri "
    "and enter user_code to link it"
)
CONFIRM_MESSAGE = (
    "this identity matches an existing account: its owner must sign in at verification_uri, "
    "authorize, and give you the code for claim/complete"
)
log = structlog.get_logger("service.http")


def challenge(error: str, description: str, **params: str) -> str:
    """The `WWW-Authenticate` value of V1's 401s: `AgentAuth` with quoted parameters."""
    fields = {"error": error, "error_description": description, **params}
    quoted = (f'{name}="{value.replace(chr(34), chr(39))}"' for name, value in fields.items())
    return "AgentAuth " + ", ".join(quoted)


async def identity_assertion(
    request: Request[Any, Any, Any],
    ctx: Context,
    resources: Resources,
    assertion: str,
    *,
    nested: bool = False,
) -> Response[bytes]:
    """V1 with an ID-JAG; `nested`: the AuthKit profile's bodies (contract [PR28]: `id`,
    `type`, `identity{…}` and a flat `scopes` when served; on a step-up `scopes{post_claim}`
    and `claim{token, expires_at, url, attempt{verification_uri, expires_at}}`, no code)."""
    who = v06_caller(request)
    await resources.limiter.registration(ctx.tenant.tenant_id, "id_jag", who.client_ip)
    try:
        answer = await register_identity_v06(ctx, assertion, who)
    except LoginRequired as exc:
        log.info("http.refused", path=request.url.path, error=exc.code, status=exc.status)
        note_refusal(exc.code)
        max_age = str(exc.max_age)
        headers = {"WWW-Authenticate": challenge(exc.code, exc.message, max_age=max_age)}
        return IDENTITY.reply(exc.code, exc.message, exc.status, headers, max_age=exc.max_age)
    if isinstance(answer, Served):
        return json_reply(_served_nested(answer) if nested else _served(answer))
    log.info("identity.step_up", registration_id=answer.registration_id)
    code = "interaction_required"
    message = CONFIRM_MESSAGE if nested else STEP_UP_MESSAGE
    handles = _step_up_nested(ctx, answer) if nested else _step_up(ctx, answer)
    headers = {"WWW-Authenticate": challenge(code, message)}
    return IDENTITY.reply(code, message, 401, headers, **handles)


def _served(answer: Served) -> dict[str, Any]:
    return {
        "registration_id": answer.registration_id,
        "registration_type": REGISTRATION_TYPE,
        "identity_assertion": answer.identity_assertion,
        "assertion_expires": timestamp(answer.assertion_expires),
        "scopes": list(answer.scopes),
    }


def _served_nested(answer: Served) -> dict[str, Any]:
    return {
        "id": answer.registration_id,
        "type": REGISTRATION_TYPE,
        "identity": {
            "assertion": answer.identity_assertion,
            "expires_at": timestamp(answer.assertion_expires),
        },
        "scopes": list(answer.scopes),
    }


def _step_up(ctx: Context, answer: SteppedUp) -> dict[str, Any]:
    return {
        "registration_id": answer.registration_id,
        "registration_type": REGISTRATION_TYPE,
        "claim_url": ctx.tenant.claim_endpoint,
        "claim_token": answer.claim_token,
        "claim_token_expires": timestamp(answer.claim_token_expires),
        "post_claim_scopes": list(answer.post_claim_scopes),
        "claim": {
            "user_code": answer.user_code,
            "expires_in": answer.expires_in,
            "verification_uri": answer.verification_uri,
            "interval": answer.interval,
        },
    }


def _step_up_nested(ctx: Context, answer: SteppedUp) -> dict[str, Any]:
    return {
        "id": answer.registration_id,
        "type": REGISTRATION_TYPE,
        "scopes": {"post_claim": list(answer.post_claim_scopes)},
        "claim": {
            "token": answer.claim_token,
            "expires_at": timestamp(answer.claim_token_expires),
            "url": ctx.tenant.claim_endpoint,
            "attempt": {
                "verification_uri": answer.verification_uri,
                "expires_at": timestamp(answer.link_expires_at),
            },
        },
    }
