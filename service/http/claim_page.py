"""The person's side of the claim: E6 the link's page, E7 the code (spec §6.3, W12).

GET only shows what the link claims; nothing is minted until the person presses the page's
button, a plain form POST to E7 whose answer is the page with the code. E7 also answers JSON
(`{"claim_attempt_token": …}` → `{"type": "otp", "challenge", "expires_at"}`) as the spec
describes it. Every page is no-store, unframeable, referrer-free and script-free.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response, Router, get, post
from litestar.di import NamedDependency

from service.commands.claim import claim_page, issue_otp
from service.commands.context import Context
from service.domain.errors import ProtocolError
from service.http.bodies import (
    BODY_LIMIT,
    FORM,
    ChallengeBody,
    json_reply,
    media_type,
    read_form_token,
    read_json,
    timestamp,
    v1_caller,
)
from service.http.errors import error_headers
from service.http.page_templates import (
    PAGE_HEADERS,
    TOKEN_FIELD,
    claim_view,
    code_view,
    problem_view,
)
from service.http.route_docs import CHALLENGE_DOC, VIEW_DOC
from service.http.tenancy import door_guard
from service.observability.request_outcome import note_refusal
from service.runtime.resources import Resources
from service.tenancy.config import CLAIM_PATH

VIEW_PATH = CLAIM_PATH + "/view"
CHALLENGE_PATH = CLAIM_PATH + "/attempt/challenge"
AnyRequest = Request[Any, Any, Any]
log = structlog.get_logger("service.http")

# What a person is told, per refusal: (title, what to do). E6 answers 404 for a dead link.
_PROBLEMS: dict[str, tuple[str, str]] = {
    "claim_superseded": (
        "This link is not valid",
        "It was replaced by a newer e-mail, or already used. Open the newest e-mail you got.",
    ),
    "claim_expired": (
        "This link has expired",
        "Ask the agent for a new claim; it can send you a fresh e-mail.",
    ),
    "claim_completed": ("Already claimed", "This agent is already linked. Nothing to do."),
    "rate_limited": (
        "Too many codes",
        "This link made too many codes, or too many were asked for from here. Wait a while, "
        "or ask the agent for a new claim.",
    ),
    "invalid_request": ("This request is malformed", "Open the link from the e-mail again."),
}


def html_reply(page: str, status: int = 200, extra: dict[str, str] | None = None) -> Response[str]:
    return Response(
        page,
        status_code=status,
        media_type=MediaType.HTML,
        headers={**PAGE_HEADERS, **(extra or {})},
    )


def refusal_page(exc: ProtocolError, *, status: int | None = None) -> Response[str]:
    title, advice = _PROBLEMS.get(exc.code, ("This did not work", exc.message))
    log.info("http.refused", error=exc.code, status=status or exc.status)
    note_refusal(exc.code)
    headers = error_headers(exc)
    return html_reply(problem_view(title, advice), status or exc.status, headers)


@get(VIEW_PATH, summary="E6: the claim link's page", media_type=MediaType.HTML,
     operation_class=VIEW_DOC)  # fmt: skip
async def view(request: AnyRequest, ctx: NamedDependency[Context]) -> Response[str]:
    token = request.query_params.get("token")
    if not token:
        problem = problem_view("This link is incomplete", "Open the link from the e-mail again.")
        return html_reply(problem, 400)
    try:
        page = await claim_page(ctx, token)
    except ProtocolError as exc:
        dead = exc.code == "claim_superseded"  # unknown, replaced or used: "link invalid"
        return refusal_page(exc, status=404 if dead else None)
    return html_reply(
        claim_view(
            service_name=ctx.tenant.resource_name,
            email=page.email,
            registration_id=page.registration_id,
            link_expires_at=page.link_expires_at,
            action=ctx.tenant.issuer + CHALLENGE_PATH,
            token=token,
        )
    )


@post(CHALLENGE_PATH, summary="E7: mint the one-time code (the claim page's button)",
      request_max_body_size=BODY_LIMIT, operation_class=CHALLENGE_DOC)  # fmt: skip
async def challenge(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[Any]:
    if media_type(request) == FORM:
        return await _challenge_page(request, ctx, resources)
    body = await read_json(request, ChallengeBody)
    who = v1_caller(request)
    await resources.limiter.code(ctx.tenant.tenant_id, body.claim_attempt_token, who.client_ip)
    issued = await issue_otp(ctx, body.claim_attempt_token, who)
    return json_reply(
        {"type": "otp", "challenge": issued.otp, "expires_at": timestamp(issued.expires_at)}
    )


async def _challenge_page(request: AnyRequest, ctx: Context, resources: Resources) -> Response[str]:
    """The form's POST: the page with the code, or why there is none."""
    try:
        token = await read_form_token(request, TOKEN_FIELD)
        who = v1_caller(request)
        await resources.limiter.code(ctx.tenant.tenant_id, token, who.client_ip)
        issued = await issue_otp(ctx, token, who)
    except ProtocolError as exc:
        return refusal_page(exc)
    return html_reply(
        code_view(
            service_name=ctx.tenant.resource_name,
            otp=issued.otp,
            expires_at=issued.expires_at,
            action=ctx.tenant.issuer + CHALLENGE_PATH,
            token=token,
        )
    )


def claim_page_router() -> Router:
    return Router("/", route_handlers=[view, challenge], tags=["claim"], guards=[door_guard("v1")])
