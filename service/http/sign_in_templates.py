"""The sign-in pages a person sees at the v0.6 door (contract V3): the form, "check your
inbox", the mailed link's page and the signed-in page.

Same house as the claim pages (page_templates.py): one inline stylesheet allowed by its hash,
no script, every form a plain POST to this service (CSP `form-action 'self'`), every value
HTML-escaped. The OpenID sign-in is a plain link, not a form: `form-action` would refuse a
form whose answer redirects to the provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape

from service.http.page_templates import page

CSRF_FIELD = "csrf"
EMAIL_FIELD = "email"
RETURN_TO_FIELD = "return_to"
TOKEN_FIELD = "token"  # noqa: S105 - a form field name


def _when(instant: datetime) -> str:
    utc = instant.astimezone(UTC)
    machine = utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'<time datetime="{machine}">{utc.strftime("%H:%M UTC on %Y-%m-%d")}</time>'


def _hidden(fields: Mapping[str, str]) -> str:
    e = escape
    return "\n".join(
        f'<input type="hidden" name="{e(name, quote=True)}" value="{e(value, quote=True)}">'
        for name, value in fields.items()
    )


def post_form(action: str, fields: Mapping[str, str], label: str, visible: str = "") -> str:
    """A form POSTing `fields` (hidden) and any `visible` inputs to `action`, with one button."""
    return f"""<form method="post" action="{escape(action, quote=True)}">
{_hidden(fields)}
{visible}<button type="submit">{escape(label)}</button>
</form>"""


def mask_email(email: str) -> str:
    """`a…@example.net`: enough for the person to recognise their address, not to read it
    off a leaked URL's page."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}…@{domain}" if local else "…"


def login_view(
    *,
    service_name: str,
    action: str,
    return_to: str,
    csrf: str,
    email: bool,
    oidc: tuple[str, str] | None,
    typed: str = "",
    error: str | None = None,
) -> str:
    """GET /login: the e-mail field (when SIGN_IN has `email`) and the OpenID link (`oidc`:
    href and the provider's name, when SIGN_IN has `oidc`)."""
    parts = [
        f"<p>To continue at <strong>{escape(service_name)}</strong>, show which e-mail "
        "address is yours.</p>"
    ]
    if error is not None:
        parts.append(f'<p class="small" role="alert"><strong>{escape(error)}</strong></p>')
    if email:
        field = (
            f'<p><label for="email">Your e-mail address</label><br>\n'
            f'<input id="email" type="email" name="{EMAIL_FIELD}" required maxlength="254" '
            f'autocomplete="email" value="{escape(typed, quote=True)}"></p>\n'
        )
        hidden = {RETURN_TO_FIELD: return_to, CSRF_FIELD: csrf}
        parts.append(post_form(action, hidden, "Mail me a sign-in link", field))
    if oidc is not None:
        href, name = oidc
        parts.append(f'<p><a href="{escape(href, quote=True)}">Sign in with {escape(name)}</a></p>')
    return page("Sign in", "\n".join(parts))


def inbox_view(*, service_name: str, email: str, expires_at: datetime) -> str:
    """POST /login: the same page whether or not anyone has that address."""
    body = f"""<p>If <strong>{escape(email)}</strong> can receive mail, a sign-in link for
<strong>{escape(service_name)}</strong> is on its way to it.</p>
<p>Open the link, on this device or another, and press the button there. It works once, until
{_when(expires_at)}.</p>
<p class="small">Nothing came? Check the spam folder, or go back and check the address.</p>"""
    return page("Check your inbox", body)


def link_view(
    *, service_name: str, email: str, action: str, token: str, csrf: str, expires_at: datetime
) -> str:
    """GET /login/email: who the link signs in, and the button that does it (a link scanner
    that only fetches the page signs nobody in)."""
    body = f"""<p>Sign in at <strong>{escape(service_name)}</strong> as
<strong>{escape(mask_email(email))}</strong>.</p>
{post_form(action, {TOKEN_FIELD: token, CSRF_FIELD: csrf}, "Sign in")}
<p class="small">This link works once, until {_when(expires_at)}. If you did not ask to sign
in, close this page: nobody is signed in until the button is pressed.</p>"""
    return page("Sign in", body)


def signed_in_view(*, service_name: str, email: str, logout_action: str, csrf: str) -> str:
    """GET /login with nothing to return to, signed in: who, and a way out."""
    body = f"""<p>You are signed in at <strong>{escape(service_name)}</strong> as
<strong>{escape(email)}</strong>.</p>
<p>Open the link your agent gave you to continue.</p>
{post_form(logout_action, {CSRF_FIELD: csrf}, "Sign out")}"""
    return page("Signed in", body)


def nothing_view(service_name: str) -> str:
    """GET /login with nothing to return to, signed out."""
    body = f"""<p>You are not signed in at <strong>{escape(service_name)}</strong>.</p>
<p>To approve an agent, open the link it gave you: it brings you back here to sign in.</p>"""
    return page("Not signed in", body)
