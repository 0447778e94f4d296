"""What the sign-in pages (identity_pages.py, oidc_pages.py) share: their paths, the browser's
session and pre-session cookies as the request brings them, redirects that set cookies, and
the checks every form post passes (cross-site, CSRF) or every page applies (`SIGN_IN`).
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.datastructures import Cookie

from service.commands.context import Context
from service.domain.errors import ProtocolError
from service.http.page_family import problem_page
from service.http.page_templates import PAGE_HEADERS
from service.runtime.resources import Resources
from service.signin.cookies import CookieSpec, cookie_name
from service.signin.csrf import (
    CSRF_COOKIE,
    cross_site_refusal,
    csrf_ok,
    new_pre_session_value,
    pre_session_cookie,
)
from service.signin.keys import SignInKeys
from service.signin.oidc import CALLBACK_PATH
from service.signin.sessions import SESSION_COOKIE, Session, open_session, session_cookie

AnyRequest = Request[Any, Any, Any]
LOGIN_PATH = "/login"
LOGIN_EMAIL_PATH = "/login/email"
LOGIN_OIDC_PATH = "/login/oidc"
LOGIN_OIDC_CALLBACK_PATH = CALLBACK_PATH
LOGOUT_PATH = "/logout"
LOGIN, LOGIN_EMAIL, LOGOUT = "login", "login_email", "logout"  # CSRF purposes, one per form
_PRE_SESSION_CHARS = 26  # `csr_` + 22 base64url characters


@cache
def sign_in_keys(secret: str) -> SignInKeys:
    """The pages' keys, derived once per server secret."""
    return SignInKeys.from_secret(secret)


def as_cookie(spec: CookieSpec) -> Cookie:
    return Cookie(
        key=spec.key, value=spec.value, max_age=spec.max_age, secure=spec.secure,
        httponly=spec.httponly, samesite=spec.samesite, path=spec.path,
    )  # fmt: skip


def page_with(page: str, *cookies: CookieSpec | None) -> Response[str]:
    """A 200 page that also sets `cookies` (None ones skipped)."""
    return Response(page, media_type="text/html", headers=PAGE_HEADERS,
                    cookies=[as_cookie(c) for c in cookies if c is not None])  # fmt: skip


def redirect(location: str, *cookies: CookieSpec) -> Response[str]:
    """302 to `location` (an absolute URL of this service, or the provider's)."""
    headers = {**PAGE_HEADERS, "Location": location}
    return Response(  # an empty page: Litestar's default media type would say JSON
        "", status_code=302, media_type="text/html", headers=headers,
        cookies=[as_cookie(c) for c in cookies],
    )  # fmt: skip


def seconds(value: int) -> timedelta:
    return timedelta(seconds=value)


def current_session(request: AnyRequest, ctx: Context) -> Session | None:
    """The signed-in person, if the request's session cookie holds a live session."""
    issuer = ctx.tenant.issuer
    value = request.cookies.get(cookie_name(issuer, SESSION_COOKIE))
    return open_session(sign_in_keys(ctx.secret_key), tenant_id=ctx.tenant.tenant_id,
                        issuer=issuer, value=value, now=ctx.clock.now())  # fmt: skip


def signed_in(ctx: Context, session: Session, return_to: str, *more: CookieSpec) -> Response[str]:
    """302 back to `return_to` with the session's cookie (and `more`)."""
    spec = session_cookie(sign_in_keys(ctx.secret_key), tenant_id=ctx.tenant.tenant_id,
                          issuer=ctx.tenant.issuer, session=session)  # fmt: skip
    return redirect(ctx.tenant.issuer + return_to, spec, *more)


def one_query(request: AnyRequest, name: str) -> str | None:
    """A query parameter given at most once (twice is a 400)."""
    values = request.query_params.getall(name, [])
    if len(values) > 1:
        raise ProtocolError("invalid_request", f"{name} is given more than once")
    return values[0] if values else None


class CrossSite(Exception):
    """A state-changing request from another site (answered 403)."""


def cross_site(_: AnyRequest, exc: CrossSite) -> Response[str]:
    return problem_page(403, "Refused", f"{exc}. Go back to this service's page and try again.")


def check_origin(request: AnyRequest, ctx: Context) -> None:
    """A form post the browser marks as cross-site is refused before its body is read."""
    reason = cross_site_refusal(dict(request.headers), ctx.tenant.issuer)
    if reason is not None:
        raise CrossSite(reason[:1].upper() + reason[1:])


def pre_session(request: AnyRequest, issuer: str) -> tuple[str, CookieSpec | None]:
    """The browser's pre-session CSRF value, and the cookie to set when it had none."""
    value = request.cookies.get(cookie_name(issuer, CSRF_COOKIE), "")
    if value.startswith("csr_") and len(value) == _PRE_SESSION_CHARS and value.isascii():
        return value, None
    fresh = new_pre_session_value()
    return fresh, pre_session_cookie(issuer, fresh)


def pre_session_csrf_ok(request: AnyRequest, ctx: Context, purpose: str, presented: str) -> bool:
    """A form shown before a session: its token, bound to the pre-session cookie."""
    binding = request.cookies.get(cookie_name(ctx.tenant.issuer, CSRF_COOKIE))
    return csrf_ok(sign_in_keys(ctx.secret_key), purpose, binding, presented)


def bad_csrf() -> Response[str]:
    return problem_page(400, "This form has expired", "Go back, reload the page and try again.")


def bad_return_to() -> Response[str]:
    return problem_page(400, "This sign-in link cannot be used",
                        "It does not lead back to a page of this service. Open the link your "
                        "agent gave you again.")  # fmt: skip


def offered(ctx: Context, method: str) -> None:
    """404 unless the tenant's SIGN_IN names `method`."""
    if method not in ctx.tenant.sign_in:
        raise ProtocolError("not_found", f"this service does not sign in by {method}")


def oidc_offered(ctx: Context, resources: Resources) -> bool:
    """SIGN_IN names `oidc` and the installation has a provider."""
    return "oidc" in ctx.tenant.sign_in and resources.oidc is not None


def oidc_link(ctx: Context, resources: Resources, return_to: str) -> tuple[str, str] | None:
    """(href, provider's name) of the OpenID sign-in, when this tenant offers it."""
    if not oidc_offered(ctx, resources) or resources.oidc is None:
        return None
    href = f"{ctx.tenant.issuer}{LOGIN_OIDC_PATH}?return_to={quote(return_to, safe='')}"
    return href, resources.oidc.settings.name or "your organisation's account"
