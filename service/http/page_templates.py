"""The pages a person sees: the claim's (spec §6.3: the link's page, the code, refusals) and
the service's index (`GET /`).

No script at all: the link's page (E6) holds a plain form whose button POSTs to E7, and the
answer to that POST is the page with the code. One inline stylesheet, allowed by its hash in
a Content-Security-Policy that allows nothing else; the pages may not be framed, cached or
leak their URL (which holds the link token) as a referrer. Every value is HTML-escaped.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

STYLE = (
    "body{font-family:system-ui,sans-serif;line-height:1.5;color:#222;max-width:36em;"
    "margin:2em auto;padding:0 1em}"
    "button{font-size:1.1em;padding:.6em 1.2em;background:#1f5fbf;color:#fff;border:0;"
    "border-radius:4px;cursor:pointer}"
    ".code{font-family:ui-monospace,monospace;font-size:2.4em;letter-spacing:.2em;"
    "margin:.4em 0}"
    ".small{font-size:.9em;color:#555}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
TOKEN_FIELD = "claim_attempt_token"  # noqa: S105 - a form field name


def _when(instant: datetime) -> str:
    utc = instant.astimezone(UTC)
    machine = utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'<time datetime="{machine}">{utc.strftime("%H:%M:%S UTC on %Y-%m-%d")}</time>'


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escape(title)}</h1>
{body}
</body>
</html>
"""


def _button(action: str, token: str, label: str) -> str:
    return f"""<form method="post" action="{escape(action, quote=True)}">
<input type="hidden" name="{TOKEN_FIELD}" value="{escape(token, quote=True)}">
<button type="submit">{escape(label)}</button>
</form>"""


def claim_view(
    *,
    service_name: str,
    email: str | None,
    registration_id: str,
    link_expires_at: datetime,
    action: str,
    token: str,
) -> str:
    """E6: who asks, for which address; a button that mints a code (nothing minted yet)."""
    who = f"<strong>{escape(email)}</strong>" if email else "your address"
    body = f"""<p>An AI agent asks to act for you at <strong>{escape(service_name)}</strong>,
linked to {who}.</p>
<p>If you started this, press the button to get a one-time code, then give that code to your
agent. Each press makes a new code and the earlier one stops working.</p>
{_button(action, token, "Show my code")}
<p class="small">Registration: <code>{escape(registration_id)}</code><br>
This link works until {_when(link_expires_at)}.</p>
<p>If this was not you, close this page: the agent stays limited and is not linked to you.</p>"""
    return _page("An AI agent asks to act for you", body)


def code_view(*, service_name: str, otp: str, expires_at: datetime, action: str, token: str) -> str:
    """E7 from the page: the code, once, and a way to get a new one."""
    body = f"""<p>Give this code to your agent at <strong>{escape(service_name)}</strong>:</p>
<p class="code" id="otp">{escape(otp)}</p>
<p>It works until {_when(expires_at)}. Do not give it to anyone else: whoever enters it
first takes the agent's link to your account.</p>
<p class="small">Lost it, or the agent says it was refused? Get a new one (this one then stops
working):</p>
{_button(action, token, "Show a new code")}"""
    return _page("Your one-time code", body)


def problem_view(title: str, message: str) -> str:
    """A refusal: the link is unknown, replaced, used or expired, or the request is malformed."""
    return _page(title, f"<p>{escape(message)}</p>")


def index_view(service_name: str, sections: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """`GET /`: each section's links, as (title, href)."""
    parts = [
        "<p>An event-sourced credential service for AI agents. An agent starts at "
        "<code>auth.md</code>; a person reads the API docs.</p>"
    ]
    for heading, links in sections:
        items = "".join(
            f'<li><a href="{escape(href, quote=True)}">{escape(title)}</a></li>\n'
            for title, href in links
        )
        parts.append(f"<h2>{escape(heading)}</h2>\n<ul>\n{items}</ul>")
    return _page(service_name, "\n".join(parts))


def page(title: str, body: str) -> str:
    """A whole page in this house style (the sign-in pages' too); `body` is HTML whose values
    the caller escaped."""
    return _page(title, body)
