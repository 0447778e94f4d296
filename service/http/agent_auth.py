"""The agent's endpoints: E4 register, E5 start a claim, E8 complete it (spec §2, §5, §6).

Each handler reads its body (service.http.bodies), calls one command and shapes the answer;
refusals are ProtocolErrors, answered by service.http.errors. Every answer is `no-store`.
Spec §10's rate limits (service.ratelimit) are checked before the command, so a refused
request writes nothing; E9's once the logout token is verified, so forged tokens spend
nothing of a real issuer's budget.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Request, Response, Router, post
from litestar.di import NamedDependency

from events.registration import CredentialKind
from service.commands.claim import complete_claim, start_claim
from service.commands.context import Caller, Context
from service.commands.identity import Delegated, register_id_jag
from service.commands.registration import (
    Registered,
    register_anonymous,
    register_verified_email,
)
from service.commands.revocation import logout
from service.domain.errors import ProtocolError
from service.http.bodies import (
    BODY_LIMIT,
    CompleteBody,
    RegisterBody,
    StartClaimBody,
    check_email,
    json_reply,
    read_json,
    read_logout_token,
    timestamp,
    v1_caller,
)
from service.http.route_docs import COMPLETE_DOC, REGISTER_DOC, REVOKE_DOC, START_CLAIM_DOC
from service.http.tenancy import door_guard
from service.ratelimit.limiter import Flow
from service.runtime.resources import Resources
from service.tenancy.config import CLAIM_PATH, ID_JAG, REGISTER_PATH, REVOKE_PATH

COMPLETE_PATH = CLAIM_PATH + "/complete"
CREDENTIAL_KINDS: tuple[CredentialKind, ...] = ("api_key", "access_token")
AnyRequest = Request[Any, Any, Any]


@post(REGISTER_PATH, summary="E4: register an agent", request_max_body_size=BODY_LIMIT,
      operation_class=REGISTER_DOC)  # fmt: skip
async def register(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[bytes]:
    body = await read_json(request, RegisterBody)
    return json_reply(await registration_answer(ctx, resources, body, v1_caller(request)))


async def registration_answer(
    ctx: Context, resources: Resources, body: RegisterBody, who: Caller
) -> dict[str, Any]:
    """E4 once the body is read: limits, the command, the answer's fields (spec §5). The
    framework route above and service.http.hot_routes both answer with it."""

    async def limit(flow: Flow, recipient: str | None = None) -> None:
        """Spec §10 (+ issue 12.5): before anything is verified, written or mailed."""
        await resources.limiter.registration(
            ctx.tenant.tenant_id, flow, who.client_ip, recipient=recipient
        )

    if body.type == "anonymous":
        if body.assertion_type is not None or body.assertion is not None:
            raise ProtocolError("invalid_request", "anonymous registration takes no assertion")
        kind = _credential_kind(body.requested_credential_type)
        await limit("anonymous")
        registered = await register_anonymous(ctx, kind, who)
    elif body.type == "identity_assertion":
        if body.assertion_type is None or body.assertion is None:
            raise ProtocolError(
                "invalid_request", "identity_assertion needs assertion_type and assertion"
            )
        if body.assertion_type == ID_JAG:
            kind = _credential_kind(body.requested_credential_type)
            await limit("id_jag")
            return _delegated(await register_id_jag(ctx, body.assertion, kind, who))
        if body.assertion_type != "verified_email":
            raise ProtocolError("invalid_request", "assertion_type is not one we accept")
        email = check_email(body.assertion, "assertion")
        kind = _credential_kind(body.requested_credential_type)
        await limit("verified_email", email)
        registered = await register_verified_email(ctx, email, kind, who)
    else:
        raise ProtocolError("invalid_request", "type must be anonymous or identity_assertion")
    return _registered(ctx, registered)


@post(CLAIM_PATH, summary="E5: start a claim (anonymous registrations)",
      request_max_body_size=BODY_LIMIT, operation_class=START_CLAIM_DOC)  # fmt: skip
async def claim(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[bytes]:
    body = await read_json(request, StartClaimBody)
    email = check_email(body.email, "email")
    await resources.limiter.claim_start(ctx.tenant.tenant_id, body.claim_token, email)
    started = await start_claim(ctx, body.claim_token, email, v1_caller(request))
    return json_reply(
        {
            "registration_id": started.registration_id,
            "claim_attempt_id": started.claim_attempt_id,
            "status": "initiated",
            "expires_at": timestamp(started.expires_at),
        }
    )


@post(COMPLETE_PATH, summary="E8: complete a claim with the user's code",
      request_max_body_size=BODY_LIMIT, operation_class=COMPLETE_DOC)  # fmt: skip
async def complete(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[bytes]:
    body = await read_json(request, CompleteBody)
    who = v1_caller(request)
    await resources.limiter.completion(ctx.tenant.tenant_id, body.claim_token, who.client_ip)
    completed = await complete_claim(ctx, body.claim_token, body.otp, who)
    answer: dict[str, Any] = {"registration_id": completed.registration_id, "status": "claimed"}
    credential = completed.credential
    if credential is not None:
        answer |= {
            "credential_type": credential.kind,
            "credential": credential.plain,
            "credential_expires": _maybe(credential.expires_at),
            "scopes": list(credential.scopes),
        }
    return json_reply(answer)


@post(REVOKE_PATH, summary="E9: a provider revokes its subject's credentials (logout token)",
      request_max_body_size=BODY_LIMIT, operation_class=REVOKE_DOC)  # fmt: skip
async def revoke(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[bytes]:
    async def admit(issuer: str) -> None:  # spec §10: per verified issuer
        await resources.limiter.revocation(ctx.tenant.tenant_id, issuer)

    revoked = await logout(ctx, await read_logout_token(request), v1_caller(request), admit)
    return json_reply({"revoked": revoked.count})


def _delegated(delegated: Delegated) -> dict[str, Any]:
    """§5.3: the credential with every supported scope; no claim, no refresh token."""
    credential = delegated.credential
    return {
        "registration_id": delegated.registration_id,
        "registration_type": "agent-provider",
        "credential_type": credential.kind,
        "credential": credential.plain,
        "credential_expires": _maybe(credential.expires_at),
        "scopes": list(credential.scopes),
    }


def _credential_kind(value: str) -> CredentialKind:
    for kind in CREDENTIAL_KINDS:
        if value == kind:
            return kind
    raise ProtocolError("unsupported_credential_type", "requested_credential_type is not offered")


def _maybe(instant: datetime | None) -> str | None:
    return None if instant is None else timestamp(instant)


def _registered(ctx: Context, registered: Registered) -> dict[str, Any]:
    """§5.1 (anonymous, with its key) or §5.2 (email, no credential), in the spec's order."""
    answer: dict[str, Any] = {
        "registration_id": registered.registration_id,
        "registration_type": registered.registration_type,
    }
    if registered.credential is not None:
        answer |= {
            "credential_type": registered.credential_type,
            "credential": registered.credential,
            "credential_expires": _maybe(registered.credential_expires),
            "scopes": list(registered.scopes),
        }
    return answer | {
        "claim_url": ctx.tenant.claim_uri,
        "claim_token": registered.claim_token,
        "claim_token_expires": timestamp(registered.claim_token_expires),
        "post_claim_scopes": list(ctx.tenant.post_claim_scopes),
    }


def agent_auth_router() -> Router:
    return Router(
        "/",
        route_handlers=[register, claim, complete, revoke],
        tags=["registration"],
        guards=[door_guard("v1")],
    )
