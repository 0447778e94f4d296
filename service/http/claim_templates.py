"""The v0.6 claim pages a signed-in person sees (contract V4, V5, Deny): the code form with
Approve and Deny, what an approval or a refusal did, and the wrong-account page.

The house of the sign-in pages (sign_in_templates.py): one inline stylesheet allowed by its
hash, no script, plain POST forms to this service, every value HTML-escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from service.http.page_templates import TOKEN_FIELD, page
from service.http.sign_in_templates import CSRF_FIELD, post_form

CODE_FIELD = "user_code"
_CODE_INPUT = (
    f'<p><label for="user_code">The code your agent shows</label><br>\n'
    f'<input id="user_code" name="{CODE_FIELD}" required inputmode="numeric" '
    f'pattern="[0-9]{{6}}" minlength="6" maxlength="6" autocomplete="one-time-code"></p>\n'
)


def _until(instant: datetime) -> str:
    utc = instant.astimezone(UTC)
    machine = utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'<time datetime="{machine}">{utc.strftime("%H:%M UTC on %Y-%m-%d")}</time>'


def who_asks(kind: str, step_up_issuer: str | None) -> str:
    """What asks, in the person's words (already escaped)."""
    if step_up_issuer is not None:
        return (
            f"An AI agent signed in with your account at <strong>{escape(step_up_issuer)}</strong>"
        )
    if kind == "anonymous":
        return "An AI agent that registered without an account"
    return "An AI agent that gave your e-mail address"


def claim_form_view(
    *,
    service_name: str,
    asks: str,
    email: str,
    action: str,
    deny_action: str,
    token: str,
    csrf: str,
    deny_csrf: str,
    link_expires_at: datetime,
    new_account: bool,
    error: str | None = None,
) -> str:
    """V4: who asks, who is signed in, the code field with Approve, and Deny. `asks` is
    HTML (who_asks)."""
    alert = ""
    if error is not None:
        alert = f'<p class="small" role="alert"><strong>{escape(error)}</strong></p>\n'
    advisory = ""
    if new_account:
        advisory = '<p class="small">No account has this address yet: approving makes one.</p>\n'
    approve = post_form(action, {TOKEN_FIELD: token, CSRF_FIELD: csrf}, "Approve", _CODE_INPUT)
    decline = post_form(deny_action, {TOKEN_FIELD: token, CSRF_FIELD: deny_csrf}, "Deny")
    body = f"""<p>{asks} asks to act for you at <strong>{escape(service_name)}</strong>.</p>
<p>You are signed in as <strong>{escape(email)}</strong>.</p>
{alert}<p>If you started this, type the six-digit code your agent shows you and approve.
Never type a code someone else sent you.</p>
{approve}
{advisory}<p>If this was not you, deny: the agent gets nothing.</p>
{decline}
<p class="small">This page works until {_until(link_expires_at)}.</p>"""
    return page("An AI agent asks to act for you", body)


def approved_view(service_name: str) -> str:
    """V5's 200: the claim is made; the agent's next poll collects it."""
    body = f"""<p>Your agent is now linked to your account at
<strong>{escape(service_name)}</strong>. It picks up its access on its own; you may close this
page.</p>"""
    return page("Approved", body)


def already_claimed_view(service_name: str) -> str:
    """V4 for a registration already claimed (the link that claimed it, reopened)."""
    body = f"""<p>This agent is already linked to an account at
<strong>{escape(service_name)}</strong>. There is nothing more to do here.</p>"""
    return page("Already approved", body)


def denied_view(service_name: str) -> str:
    """Deny's 200."""
    body = f"""<p>You declined. The agent gets no access to your account at
<strong>{escape(service_name)}</strong>, and this link no longer works.</p>"""
    return page("Declined", body)


def wrong_account_view(*, email: str, logout_action: str, csrf: str) -> str:
    """403 (O-J): the agent named another address than the one signed in."""
    body = f"""<p>You are signed in as <strong>{escape(email)}</strong>, but the agent asked
for another address. Only the person with that address may approve it.</p>
<p>If that address is yours too, sign out and sign in with it, then open the agent's link
again.</p>
{post_form(logout_action, {CSRF_FIELD: csrf}, "Sign out")}"""
    return page("This claim is for another account", body)
