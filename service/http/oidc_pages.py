"""Signing in through the installation's OpenID provider (contract V3; service/signin/oidc.py
runs the flow): GET `/login/oidc` sends the browser to the provider, GET
`/login/oidc/callback` takes it back. Both answer 404 unless the tenant's `SIGN_IN` names
`oidc` and the installation has a provider (`AUTHLEDGER_OIDC_*`), and count against
`sign_in_use_per_ip`.

The start is a plain link, not a form (a form whose answer redirects to the provider would
break the pages' CSP `form-action 'self'`); its state, nonce and PKCE verifier ride in the
sealed `authledger_oidc` cookie. The callback clears that cookie whatever happens, and
answers a 400 page naming the failed check (state, code, token, signature, nonce, email …)
with no session, or 302 to `return_to` with the session cookie. Nothing is written.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response, get
from litestar.di import NamedDependency

from service.commands.context import Context
from service.domain.errors import ProtocolError
from service.http.bodies import caller
from service.http.openapi import Answer, documented, query
from service.http.page_family import REDIRECT_CONTENT, problem_page
from service.http.sign_in_state import (
    LOGIN_OIDC_CALLBACK_PATH,
    LOGIN_OIDC_PATH,
    as_cookie,
    bad_return_to,
    oidc_offered,
    one_query,
    redirect,
    seconds,
    signed_in,
)
from service.runtime.resources import Resources
from service.signin.cookies import cookie_name
from service.signin.oidc import OIDC_COOKIE, OidcSignIn
from service.signin.oidc_provider import OidcRefused
from service.signin.return_to import safe_return_to
from service.signin.sessions import new_session

AnyRequest = Request[Any, Any, Any]
PROVIDER_RETRY_AFTER = 30  # seconds, when the provider's configuration cannot be read
log = structlog.get_logger("service.http")
_CHECKS = {  # what a person is told about a failed step (the step's name is shown too)
    "denied": "The provider did not sign you in.",
    "state": "This sign-in was not started in this browser, or it took too long.",
    "email_verified": "The provider has not verified your e-mail address.",
    "email": "The provider did not give your e-mail address.",
}


async def _provider(request: AnyRequest, ctx: Context, resources: Resources) -> OidcSignIn:
    """The provider, once the tenant offers it and the client's budget allows a try."""
    if not oidc_offered(ctx, resources) or resources.oidc is None:
        raise ProtocolError("not_found", "this service does not sign in through a provider")
    await resources.limiter.sign_in_use(ctx.tenant.tenant_id, caller(request).client_ip)
    return resources.oidc


START_DOC = documented(
    answers={302: Answer("To the provider's authorization endpoint, with the state cookie",
                         REDIRECT_CONTENT)},
    refusals=(400, 404, 429), refusal_media=("text/html",),
    parameters=[query("return_to", str, "where to go once signed in: a /claim path")],
    database=False,
)  # fmt: skip


@get(LOGIN_OIDC_PATH, summary="V3: sign in through the OpenID provider",
     operation_class=START_DOC)  # fmt: skip
async def oidc_start(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[str]:
    provider = await _provider(request, ctx, resources)
    return_to = safe_return_to(one_query(request, "return_to"))
    if return_to is None:
        return bad_return_to()
    tenant = ctx.tenant
    try:
        start = await provider.start(
            tenant_id=tenant.tenant_id, service_issuer=tenant.issuer, return_to=return_to
        )
    except OidcRefused as refused:
        log.warning("oidc.unavailable", step=refused.code, reason=refused.message)
        return problem_page(503, "Sign-in is unavailable",
                            "The sign-in provider does not answer. Try again in a moment.",
                            {"Retry-After": str(PROVIDER_RETRY_AFTER)})  # fmt: skip
    return redirect(start.authorize_url, start.cookie)


CALLBACK_DOC = documented(
    answers={302: Answer("Signed in: back to `return_to`, with the session", REDIRECT_CONTENT)},
    refusals=(400, 404, 429), refusal_media=("text/html",), database=False,
    parameters=[
        query("code", str, "the provider's authorization code", required=False),
        query("state", str, "the state this browser's sign-in sent", required=False),
        query("error", str, "the provider's refusal", required=False),
    ],
)  # fmt: skip


@get(LOGIN_OIDC_CALLBACK_PATH, summary="V3: back from the OpenID provider",
     operation_class=CALLBACK_DOC)  # fmt: skip
async def oidc_callback(
    request: AnyRequest, ctx: NamedDependency[Context], resources: NamedDependency[Resources]
) -> Response[str]:
    provider = await _provider(request, ctx, resources)
    tenant = ctx.tenant
    cleared = provider.cleared_cookie(tenant.issuer)
    try:
        back = await provider.callback(
            tenant_id=tenant.tenant_id, service_issuer=tenant.issuer,
            cookie_value=request.cookies.get(cookie_name(tenant.issuer, OIDC_COOKIE)),
            state=one_query(request, "state"), code=one_query(request, "code"),
            error=one_query(request, "error"),
        )  # fmt: skip
    except OidcRefused as refused:
        advice = _CHECKS.get(refused.code, "The provider's answer did not pass our checks.")
        shown = f"{advice} (check: {refused.code})"
        return problem_page(400, "Sign-in failed", shown, cookies=[as_cookie(cleared)])
    return_to = safe_return_to(back.return_to)
    if return_to is None:  # sealed by us from a checked value: not expected
        return bad_return_to()
    session = new_session(back.email, "oidc", now=ctx.clock.now(),
                          ttl=seconds(tenant.session_ttl), idp=back.issuer)  # fmt: skip
    return signed_in(ctx, session, return_to, cleared)


OIDC_HANDLERS = (oidc_start, oidc_callback)
