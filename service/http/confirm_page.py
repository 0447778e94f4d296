"""The AuthKit profile's page for the person (contract [PR28]; docs/design/v06-dialect.md
section 12): where its `verification_uri` leads once they signed in (V3).

- GET `/claim/confirm?claim_attempt_token=cvt_…`: no session → 302 to `/login` returning
  here; else the page's checks (service/domain/confirm.py `confirmable`: unknown or replaced
  link 404, signed in as another address than the hint 403 (O-J), claimed 409, over 410) and
  an Authorize button. Reads only.
- POST `/claim/confirm` (form `claim_attempt_token`, `csrf` bound to the session): the same
  checks, then a six-digit code (`claim.otp_issued` with `confirmed_by`), shown once, for
  the person to read to their agent, which completes the claim at
  `/agent/identity/claim/complete`. Pressing again mints a new code (E7's buckets and §6.4's
  cap on codes per attempt).

[PR28] names its person's GET `/claim`; here the main profile's claim page keeps that path
and this profile's page has its own, discovered through `verification_uri` like any page of
ours. Pages family (page_family.py); 404 for a tenant of the main profile.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency

from service.commands.authkit import confirm, confirm_view
from service.commands.claim_start import CONFIRM_PAGE_PATH
from service.commands.context import Context
from service.domain.errors import ProtocolError
from service.http.bodies import BODY_LIMIT, v06_caller
from service.http.openapi import HTML, Answer, documented, form_body, ok, query
from service.http.page_family import (
    PAGE_CONTENT,
    PAGE_HANDLERS,
    REDIRECT_CONTENT,
    html_reply,
    read_form,
)
from service.http.page_templates import page
from service.http.sign_in_state import (
    LOGIN_PATH,
    CrossSite,
    bad_csrf,
    check_origin,
    cross_site,
    current_session,
    one_query,
    redirect,
    sign_in_keys,
)
from service.http.sign_in_templates import CSRF_FIELD, mask_email, post_form
from service.http.tenancy import door_guard
from service.runtime.resources import Resources
from service.signin.csrf import csrf_ok, csrf_token
from service.signin.sessions import Session

AnyRequest = Request[Any, Any, Any]
LINK_FIELD = "claim_attempt_token"
CONFIRM = "claim_confirm"  # the CSRF purpose of this page's form
_WHO = {
    "anonymous": "An AI agent that registered without an account",
    "service_auth": "An AI agent that gave your address",
    "id_jag": "An AI agent signed in through your provider",
}


def _when(instant: datetime) -> str:
    return instant.strftime("%H:%M UTC on %Y-%m-%d")


def _to_login(ctx: Context, link_token: str) -> Response[str]:
    return_to = f"{CONFIRM_PAGE_PATH}?{LINK_FIELD}={quote(link_token, safe='')}"
    return redirect(f"{ctx.tenant.issuer}{LOGIN_PATH}?return_to={quote(return_to, safe='')}")


def _index(ctx: Context, session: Session) -> str:
    return ctx.sealer.blind_index(session.email)


def _profile(ctx: Context) -> None:
    if ctx.tenant.v06_profile != "authkit":
        raise ProtocolError("not_found", "this service's claim page is /claim")


PAGE_DOC = documented(
    answers={200: ok(PAGE_CONTENT, "Who asks, and an Authorize button"),
             302: Answer("Not signed in: to /login, returning here", REDIRECT_CONTENT)},
    refusals=(400, 403, 404, 409, 410), refusal_media=(HTML,),
    parameters=[query(LINK_FIELD, str, "the link token inside `verification_uri`")],
)  # fmt: skip


@get(CONFIRM_PAGE_PATH, summary="AuthKit: the person's claim page", operation_class=PAGE_DOC)
async def confirm_page(request: AnyRequest, ctx: NamedDependency[Context]) -> Response[str]:
    _profile(ctx)
    link_token = one_query(request, LINK_FIELD)
    if not link_token:
        raise ProtocolError("not_found", "this link is not valid")
    session = current_session(request, ctx)
    if session is None:
        return _to_login(ctx, link_token)
    view = await confirm_view(ctx, link_token, email_index=_index(ctx, session))
    csrf = csrf_token(sign_in_keys(ctx.secret_key), CONFIRM, session.sid)
    button = post_form(
        ctx.tenant.issuer + CONFIRM_PAGE_PATH, {LINK_FIELD: link_token, CSRF_FIELD: csrf},
        "Authorize",
    )  # fmt: skip
    body = f"""<p>{escape(_WHO.get(view.kind, "An AI agent"))} asks to act for you at
<strong>{escape(ctx.tenant.resource_name)}</strong>.</p>
<p>You are signed in as {escape(mask_email(session.email))}. Authorize to see a one-time code,
then read it to your agent.</p>
{button}
<p class="small">Registration: <code>{escape(view.registration_id)}</code><br>
This link works until {_when(view.link_expires_at)}.</p>
<p>If you did not ask an agent to do this, close this page: nothing happens.</p>"""
    return html_reply(page("An AI agent asks to act for you", body))


CONFIRM_DOC = documented(
    body=form_body(claim_attempt_token=str, csrf=str),
    answers={200: ok(PAGE_CONTENT, "The one-time code, for the person to read to the agent"),
             302: Answer("Not signed in: to /login, returning to the page", REDIRECT_CONTENT)},
    refusals=(400, 403, 404, 409, 410, 413, 429), refusal_media=(HTML,),
)  # fmt: skip


@post(CONFIRM_PAGE_PATH, summary="AuthKit: authorize, and see the code",
      request_max_body_size=BODY_LIMIT, operation_class=CONFIRM_DOC)  # fmt: skip
async def confirm_and_show(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[str]:
    _profile(ctx)
    check_origin(request, ctx)
    form = await read_form(request, (LINK_FIELD, CSRF_FIELD))
    link_token = form[LINK_FIELD]
    session = current_session(request, ctx)
    if session is None:
        return _to_login(ctx, link_token)
    if not csrf_ok(sign_in_keys(ctx.secret_key), CONFIRM, session.sid, form[CSRF_FIELD]):
        return bad_csrf()
    person = replace(v06_caller(request), actor="user")
    await resources.limiter.code(ctx.tenant.tenant_id, link_token, person.client_ip)
    method = "email_link" if session.method != "oidc" else f"oidc:{session.idp}"
    code, expires_at = await confirm(
        ctx, link_token, email_index=_index(ctx, session), auth_method=method, caller=person
    )
    body = f"""<p>Read this code to your agent at
<strong>{escape(ctx.tenant.resource_name)}</strong>:</p>
<p class="code" id="user_code">{escape(code)}</p>
<p>It works until {_when(expires_at)}, once. Do not give it to anyone else: whoever enters it
first links the agent to your account.</p>"""
    return html_reply(page("Your one-time code", body))


def confirm_page_router() -> Router:
    """The AuthKit profile's page, behind the v0.6 door, answering in the pages family."""
    return Router(
        "/",
        route_handlers=[confirm_page, confirm_and_show],
        tags=["claim (AuthKit)"],
        guards=[door_guard("v06")],
        exception_handlers={**PAGE_HANDLERS, CrossSite: cross_site},
    )
