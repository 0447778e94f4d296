"""The person's claim pages at the v0.6 door (contract V4, V5, Deny; docs/design/v06-dialect.md,
sections 5.2 and 7), over service/commands/person_claim.py. Pages of the pages family, served
with the sign-in pages (identity_pages.py) behind the v0.6 door.

- GET `/claim?claim_attempt_token=cvt_…` (V4): not signed in → 302 to the sign-in, returning
  here (case 13); else the code form with Approve and Deny, or what stops it: 404 (unknown,
  replaced or declined link), 403 (signed in as another address than the hint, O-J, case
  14), 200 "already approved", 410 (over). Writes nothing.
- POST `/claim` (V5), form `claim_attempt_token`, `user_code` (six digits), `csrf`: 200
  approved; 401 the form again for a wrong code (recorded, v1's limits, O-H; case 15); 400,
  302, 403, 404, 409, 410 as the contract's V5 row.
- POST `/claim/deny`, form `claim_attempt_token`, `csrf`: 200 declined.

Both POSTs refuse a cross-site request (403) and a missing or wrong CSRF token (400, bound
to the session and the form's purpose) before anything else is read, and spend E8's buckets
(`complete_per_ip`, `complete_per_registration`) before the command runs.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency

from service.commands.claim_start import CLAIM_PAGE_PATH, verification_uri
from service.commands.context import Context
from service.commands.person_claim import Person, deny, enter_code, view
from service.domain.errors import ProtocolError
from service.http.bodies import BODY_LIMIT, v06_caller
from service.http.claim_templates import (
    CODE_FIELD,
    already_claimed_view,
    approved_view,
    claim_form_view,
    denied_view,
    who_asks,
    wrong_account_view,
)
from service.http.openapi import HTML, Answer, documented, form_body, ok, query
from service.http.page_family import PAGE_CONTENT, REDIRECT_CONTENT, html_reply, problem_page
from service.http.page_family import read_form as read_page_form
from service.http.page_templates import TOKEN_FIELD
from service.http.sign_in_state import (
    LOGOUT,
    LOGOUT_PATH,
    bad_csrf,
    check_origin,
    current_session,
    one_query,
    redirect,
    sign_in_keys,
)
from service.http.sign_in_templates import CSRF_FIELD
from service.runtime.resources import Resources
from service.signin.csrf import csrf_ok, csrf_token
from service.signin.sessions import Session

AnyRequest = Request[Any, Any, Any]
DENY_PATH = CLAIM_PAGE_PATH + "/deny"
CLAIM, CLAIM_DENY = "claim", "claim_deny"  # CSRF purposes, one per form
_LINK_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CODE = re.compile(r"[0-9]{6}")
_PROBLEMS: dict[str, tuple[str, str]] = {
    "not_found": ("This link is not valid", "It was replaced by a newer one, declined, or "
                  "never existed. Ask your agent for its current link."),
    "previously_claimed": ("Already approved", "This agent is already linked to an account."),
    "claim_expired": ("This claim is over", "It expired or ended. Ask your agent to start "
                      "again."),
    "user_code_expired": ("This code no longer works", "It expired or was tried too often. "
                          "Ask your agent to start the claim again for a new code."),
}  # fmt: skip


def person_of(session: Session) -> Person:
    """The signed-in person, with how the claim records their sign-in."""
    method = "email_link" if session.method == "email_link" else f"oidc:{session.idp}"
    return Person(session.email, method)


def _to_sign_in(ctx: Context, token: str) -> Response[str]:
    """302 to the sign-in, returning to this link's claim page (the agent's verification_uri)."""
    return redirect(verification_uri(ctx.tenant, token))


def _refusal(ctx: Context, exc: ProtocolError, session: Session | None = None) -> Response[str]:
    """A refusal of the claim's, as its page: 403 offers to sign out and in as the hint."""
    if exc.code == "wrong_account" and session is not None:
        keys = sign_in_keys(ctx.secret_key)
        page = wrong_account_view(
            email=session.email, logout_action=ctx.tenant.issuer + LOGOUT_PATH,
            csrf=csrf_token(keys, LOGOUT, session.sid),
        )  # fmt: skip
        return html_reply(page, 403)
    title, advice = _PROBLEMS.get(exc.code, ("This did not work", exc.message))
    return problem_page(exc.status, title, advice)


async def _form(
    ctx: Context, token: str, session: Session, *, error: str | None = None, status: int = 200
) -> Response[str]:
    """The claim page for `session` (V4), or its refusal."""
    tenant = ctx.tenant
    try:
        shown = await view(ctx, token, person_of(session))
    except ProtocolError as exc:
        if exc.code == "previously_claimed" and status == 200:
            return html_reply(already_claimed_view(tenant.resource_name))
        if status == 401:  # a wrong code that also ended what the page offered
            _, advice = _PROBLEMS.get(exc.code, ("", exc.message))
            return problem_page(401, "That code is not right", advice)
        return _refusal(ctx, exc, session)
    keys = sign_in_keys(ctx.secret_key)
    page = claim_form_view(
        service_name=tenant.resource_name, asks=who_asks(shown.kind, shown.step_up_issuer),
        email=session.email, action=tenant.issuer + CLAIM_PAGE_PATH,
        deny_action=tenant.issuer + DENY_PATH, token=token,
        csrf=csrf_token(keys, CLAIM, session.sid),
        deny_csrf=csrf_token(keys, CLAIM_DENY, session.sid),
        link_expires_at=shown.link_expires_at, new_account=shown.new_account, error=error,
    )  # fmt: skip
    return html_reply(page, status)


PAGE_DOC = documented(
    answers={200: ok(PAGE_CONTENT, "The code form, or that the claim is already approved"),
             302: Answer("Not signed in: to the sign-in, returning here", REDIRECT_CONTENT)},
    refusals=(400, 403, 404, 410), refusal_media=(HTML,),
    parameters=[query(TOKEN_FIELD, str, "the link token (`cvt_…`) of verification_uri")],
)  # fmt: skip


@get(CLAIM_PAGE_PATH, summary="V4: the claim page", operation_class=PAGE_DOC)
async def claim_page(request: AnyRequest, ctx: NamedDependency[Context]) -> Response[str]:
    token = one_query(request, TOKEN_FIELD)
    if token is None or not _LINK_TOKEN.fullmatch(token):
        return _refusal(ctx, ProtocolError("not_found", "no such link"))
    session = current_session(request, ctx)
    if session is None:
        return _to_sign_in(ctx, token)
    return await _form(ctx, token, session)


async def _posted(
    request: AnyRequest, ctx: Context, purpose: str, fields: tuple[str, ...]
) -> tuple[dict[str, str], Session | None, Response[str] | None]:
    """A claim form's post: cross-site refused, then the form, the session and its CSRF token.
    The response to answer instead, when there is one."""
    check_origin(request, ctx)
    form = await read_page_form(request, fields)
    token = form[TOKEN_FIELD]
    if not _LINK_TOKEN.fullmatch(token):
        return form, None, _refusal(ctx, ProtocolError("not_found", "no such link"))
    session = current_session(request, ctx)
    if session is None:
        return form, None, _to_sign_in(ctx, token)
    if not csrf_ok(sign_in_keys(ctx.secret_key), purpose, session.sid, form[CSRF_FIELD]):
        return form, session, bad_csrf()
    return form, session, None


ENTER_DOC = documented(
    body=form_body(claim_attempt_token=str, user_code=str, csrf=str),
    answers={200: ok(PAGE_CONTENT, "Approved: the agent's next poll collects its access"),
             302: Answer("Not signed in: to the sign-in, returning to the claim page",
                         REDIRECT_CONTENT)},
    refusals=(400, 401, 403, 404, 409, 410, 413, 429), refusal_media=(HTML,),
)  # fmt: skip


@post(CLAIM_PAGE_PATH, summary="V5: type the agent's code", request_max_body_size=BODY_LIMIT,
      operation_class=ENTER_DOC)  # fmt: skip
async def type_code(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[str]:
    form, session, answer = await _posted(request, ctx, CLAIM, (TOKEN_FIELD, CODE_FIELD,
                                                                CSRF_FIELD))  # fmt: skip
    if answer is not None or session is None:
        return answer or _to_sign_in(ctx, form[TOKEN_FIELD])
    token, code = form[TOKEN_FIELD], form[CODE_FIELD].strip()
    if not _CODE.fullmatch(code):
        return await _form(ctx, token, session, error="The code is six digits.", status=400)
    await resources.limiter.user_code(ctx.tenant.tenant_id, token, v06_caller(request).client_ip)
    try:
        await enter_code(ctx, token, code, person_of(session), v06_caller(request))
    except ProtocolError as exc:
        if exc.code == "user_code_invalid":
            wrong = "That code is not the one your agent shows. Check it and try again."
            return await _form(ctx, token, session, error=wrong, status=401)
        return _refusal(ctx, exc, session)
    return html_reply(approved_view(ctx.tenant.resource_name))


DENY_DOC = documented(
    body=form_body(claim_attempt_token=str, csrf=str),
    answers={200: ok(PAGE_CONTENT, "Declined: the agent's next poll answers access_denied"),
             302: Answer("Not signed in: to the sign-in, returning to the claim page",
                         REDIRECT_CONTENT)},
    refusals=(400, 403, 404, 409, 410, 413, 429), refusal_media=(HTML,),
)  # fmt: skip


@post(DENY_PATH, summary="V5: decline the claim (O-G)", request_max_body_size=BODY_LIMIT,
      operation_class=DENY_DOC)  # fmt: skip
async def decline(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[str]:
    form, session, answer = await _posted(request, ctx, CLAIM_DENY, (TOKEN_FIELD, CSRF_FIELD))
    if answer is not None or session is None:
        return answer or _to_sign_in(ctx, form[TOKEN_FIELD])
    token = form[TOKEN_FIELD]
    await resources.limiter.user_code(ctx.tenant.tenant_id, token, v06_caller(request).client_ip)
    try:
        await deny(ctx, token, person_of(session), v06_caller(request))
    except ProtocolError as exc:
        return _refusal(ctx, exc, session)
    return html_reply(denied_view(ctx.tenant.resource_name))


CLAIM_HANDLERS = (claim_page, type_code, decline)
