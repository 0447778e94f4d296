"""The person's sign-in at the v0.6 door (contract V3; docs/design/v06-dialect.md, sections
5.2 and 7): GET/POST `/login`, GET/POST `/login/email`, POST `/logout`; the OpenID routes are
oidc_pages.py's. Pages of the pages family (page_family.py), served only where the tenant
opens the v0.6 door (404 elsewhere), each method only when `SIGN_IN` names it.

- `return_to` must be our claim page (service/signin/return_to.py), else a 400 page: no open
  redirect. A signed-in person is sent straight there.
- POST `/login` mails a link (service/signin/email_link.py) and answers the same page whether
  or not anybody has that address; GET `/login/email` only shows the link's page (a link
  scanner consumes nothing); POST `/login/email` uses it once and starts the session.
- Every POST: a cross-site request (Sec-Fetch-Site, Origin) is a 403 page, a missing or wrong
  CSRF token a 400 page; before a session the token is bound to the pre-session cookie the
  GET set. Nothing here appends an event.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency

from service.commands.context import Context
from service.domain.errors import ProtocolError
from service.http.bodies import BODY_LIMIT, caller, check_email
from service.http.claim_pages import CLAIM_HANDLERS
from service.http.oidc_pages import OIDC_HANDLERS
from service.http.openapi import HTML, Answer, documented, form_body, ok, query
from service.http.page_family import (
    PAGE_CONTENT,
    PAGE_HANDLERS,
    REDIRECT_CONTENT,
    html_reply,
    problem_page,
    read_form,
)
from service.http.sign_in_state import (
    LOGIN,
    LOGIN_EMAIL,
    LOGIN_EMAIL_PATH,
    LOGIN_PATH,
    LOGOUT,
    LOGOUT_PATH,
    CrossSite,
    bad_csrf,
    bad_return_to,
    check_origin,
    cross_site,
    current_session,
    offered,
    oidc_link,
    one_query,
    page_with,
    pre_session,
    pre_session_csrf_ok,
    redirect,
    seconds,
    sign_in_keys,
    signed_in,
)
from service.http.sign_in_templates import (
    CSRF_FIELD,
    EMAIL_FIELD,
    RETURN_TO_FIELD,
    TOKEN_FIELD,
    inbox_view,
    link_view,
    login_view,
    nothing_view,
    signed_in_view,
)
from service.http.tenancy import door_guard
from service.runtime.resources import Resources
from service.signin.csrf import csrf_ok, csrf_token
from service.signin.email_link import LinkRefused, peek_link, send_link, use_link
from service.signin.return_to import safe_return_to
from service.signin.sessions import clear_session_cookie, new_session

AnyRequest = Request[Any, Any, Any]
_DEAD_LINK = {
    "unknown": (404, "This link is not valid", "Ask for a new sign-in link."),
    "used": (410, "This link was already used", "Each link signs in once. Ask for a new one."),
    "expired": (410, "This link has expired", "Ask for a new sign-in link."),
}


LOGIN_DOC = documented(
    answers={200: ok(PAGE_CONTENT, "The sign-in form, or where the person is"),
             302: Answer("Signed in already: back to `return_to`", REDIRECT_CONTENT)},
    refusals=(400, 404), refusal_media=(HTML,), database=False,
    parameters=[query("return_to", str, "where to go once signed in: a /claim path",
                      required=False)],
)  # fmt: skip


@get(LOGIN_PATH, summary="V3: the sign-in page", operation_class=LOGIN_DOC)
async def login_page(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[str]:
    tenant, raw = ctx.tenant, one_query(request, RETURN_TO_FIELD)
    session = current_session(request, ctx)
    keys = sign_in_keys(ctx.secret_key)
    if raw is None:
        if session is None:
            return html_reply(nothing_view(tenant.resource_name))
        return html_reply(signed_in_view(
            service_name=tenant.resource_name, email=session.email,
            logout_action=tenant.issuer + LOGOUT_PATH, csrf=csrf_token(keys, LOGOUT, session.sid),
        ))  # fmt: skip
    return_to = safe_return_to(raw)
    if return_to is None:
        return bad_return_to()
    if session is not None:
        return redirect(tenant.issuer + return_to)
    value, fresh = pre_session(request, tenant.issuer)
    page = login_view(
        service_name=tenant.resource_name, action=tenant.issuer + LOGIN_PATH, return_to=return_to,
        csrf=csrf_token(keys, LOGIN, value), email="email" in tenant.sign_in,
        oidc=oidc_link(ctx, resources, return_to),
    )  # fmt: skip
    return page_with(page, fresh)


SEND_DOC = documented(
    body=form_body(email=str, return_to=str, csrf=str),
    answers={200: ok(PAGE_CONTENT, "Check your inbox (whoever the address is)")},
    refusals=(400, 403, 404, 413, 429), refusal_media=(HTML,),
)  # fmt: skip


@post(LOGIN_PATH, summary="V3: mail a sign-in link", request_max_body_size=BODY_LIMIT,
      operation_class=SEND_DOC)  # fmt: skip
async def send_sign_in_link(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[str]:
    offered(ctx, "email")
    check_origin(request, ctx)
    tenant = ctx.tenant
    form = await read_form(request, (EMAIL_FIELD, RETURN_TO_FIELD, CSRF_FIELD))
    if not pre_session_csrf_ok(request, ctx, LOGIN, form[CSRF_FIELD]):
        return bad_csrf()
    return_to = safe_return_to(form[RETURN_TO_FIELD])
    if return_to is None:
        return bad_return_to()
    email = form[EMAIL_FIELD].strip()
    try:
        check_email(email, EMAIL_FIELD)
    except ProtocolError:
        page = login_view(
            service_name=tenant.resource_name, action=tenant.issuer + LOGIN_PATH,
            return_to=return_to, csrf=form[CSRF_FIELD], email=True,
            oidc=oidc_link(ctx, resources, return_to), typed=email[:254],
            error="That is not an e-mail address.",
        )  # fmt: skip
        return html_reply(page, 400)
    await resources.limiter.sign_in(tenant.tenant_id, caller(request).client_ip, email)
    sent = await send_link(
        resources.pool, ctx.sealer, secret_key=ctx.secret_key, tenant_id=tenant.tenant_id,
        email=email, return_to=return_to, now=ctx.clock.now(),
        ttl=seconds(tenant.sign_in_link_ttl),
    )  # fmt: skip
    page = inbox_view(service_name=tenant.resource_name, email=email, expires_at=sent.expires_at)
    return html_reply(page)


LINK_DOC = documented(
    answers={200: ok(PAGE_CONTENT, "Who the link signs in; uses nothing")},
    refusals=(400, 404, 410), refusal_media=(HTML,),
    parameters=[query("token", str, "the mailed link's token (`lgt_…`)")],
)  # fmt: skip


@get(LOGIN_EMAIL_PATH, summary="V3: the mailed link's page", operation_class=LINK_DOC)
async def link_page(request: AnyRequest, ctx: NamedDependency[Context]) -> Response[str]:
    offered(ctx, "email")
    tenant, token = ctx.tenant, one_query(request, TOKEN_FIELD)
    try:
        link = await peek_link(ctx.pool, ctx.sealer, tenant_id=tenant.tenant_id, token=token,
                               now=ctx.clock.now())  # fmt: skip
    except LinkRefused as dead:
        return problem_page(*_DEAD_LINK[dead.state])
    value, fresh = pre_session(request, tenant.issuer)
    csrf = csrf_token(sign_in_keys(ctx.secret_key), LOGIN_EMAIL, value)
    page = link_view(
        service_name=tenant.resource_name, email=link.email,
        action=tenant.issuer + LOGIN_EMAIL_PATH, token=str(token), csrf=csrf,
        expires_at=link.expires_at,
    )  # fmt: skip
    return page_with(page, fresh)


USE_DOC = documented(
    body=form_body(token=str, csrf=str),
    answers={302: Answer("Signed in: back to the link's `return_to`, with the session",
                         REDIRECT_CONTENT)},
    refusals=(400, 403, 404, 410, 413, 429), refusal_media=(HTML,),
)  # fmt: skip


@post(LOGIN_EMAIL_PATH, summary="V3: sign in with the mailed link",
      request_max_body_size=BODY_LIMIT, operation_class=USE_DOC)  # fmt: skip
async def use_sign_in_link(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[str]:
    offered(ctx, "email")
    check_origin(request, ctx)
    tenant = ctx.tenant
    form = await read_form(request, (TOKEN_FIELD, CSRF_FIELD))
    if not pre_session_csrf_ok(request, ctx, LOGIN_EMAIL, form[CSRF_FIELD]):
        return bad_csrf()
    await resources.limiter.sign_in_use(tenant.tenant_id, caller(request).client_ip)
    now = ctx.clock.now()
    try:
        link = await use_link(ctx.pool, ctx.sealer, tenant_id=tenant.tenant_id,
                              token=form[TOKEN_FIELD], now=now)  # fmt: skip
    except LinkRefused as dead:
        return problem_page(*_DEAD_LINK[dead.state])
    return_to = safe_return_to(link.return_to)
    if return_to is None:  # checked when it was stored; a row written otherwise is refused
        return bad_return_to()
    session = new_session(link.email, "email_link", now=now, ttl=seconds(tenant.session_ttl))
    return signed_in(ctx, session, return_to)


LOGOUT_DOC = documented(
    body=form_body(csrf=str),
    answers={302: Answer("Signed out: to /login, the session cookie cleared", REDIRECT_CONTENT)},
    refusals=(400, 403, 404, 413), refusal_media=(HTML,), database=False,
)  # fmt: skip


@post(LOGOUT_PATH, summary="V3: sign out", request_max_body_size=BODY_LIMIT,
      operation_class=LOGOUT_DOC)  # fmt: skip
async def logout(request: AnyRequest, ctx: NamedDependency[Context]) -> Response[str]:
    check_origin(request, ctx)
    form = await read_form(request, (CSRF_FIELD,))
    session = current_session(request, ctx)
    keys = sign_in_keys(ctx.secret_key)
    if session is not None and not csrf_ok(keys, LOGOUT, session.sid, form[CSRF_FIELD]):
        return bad_csrf()
    issuer = ctx.tenant.issuer
    return redirect(issuer + LOGIN_PATH, clear_session_cookie(issuer))


def identity_pages_router() -> Router:
    """The sign-in and claim pages, behind the v0.6 door, answering in the pages family."""
    return Router(
        "/",
        route_handlers=[login_page, send_sign_in_link, link_page, use_sign_in_link, logout,
                        *OIDC_HANDLERS, *CLAIM_HANDLERS],
        tags=["sign-in"],
        guards=[door_guard("v06")],
        exception_handlers={**PAGE_HANDLERS, CrossSite: cross_site},
    )  # fmt: skip
