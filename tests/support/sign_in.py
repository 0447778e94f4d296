"""A person signing in on the v0.6 pages, the way a browser does it: read the page's form, post
it back with its hidden fields, follow the mailed link (read from the SMTP sink).

Only HTML and HTTP: nothing of `service/` is needed to drive the pages (tests decode the
session cookie with service/signin/sessions.py themselves when they want to look inside).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from tests.support.smtp_sink import Received

RETURN_TO = "/claim?claim_attempt_token=cvt_example"
_FORM = re.compile(r'<form method="post" action="([^"]+)">(.*?)</form>', re.DOTALL)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_LINK = re.compile(r"https?://\S+/login/email\?token=\S+")


@dataclass(frozen=True)
class Form:
    action: str
    fields: dict[str, str]  # the hidden ones

    @property
    def path(self) -> str:
        parts = urlsplit(self.action)
        return parts.path + (f"?{parts.query}" if parts.query else "")


def forms_of(page: str) -> list[Form]:
    """Every POST form of the page, with its hidden fields."""
    return [
        Form(unescape(action), {unescape(k): unescape(v) for k, v in _HIDDEN.findall(body)})
        for action, body in _FORM.findall(page)
    ]


def form_of(page: str) -> Form:
    """The page's one form."""
    [form] = forms_of(page)
    return form


def sign_in_link_of(mail: Received) -> str:
    """The sign-in link from the mail's plain-text part."""
    found = _LINK.search(mail.part("plain"))
    assert found is not None, "no sign-in link in the mail"
    return found.group(0)


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def login_path(return_to: str = RETURN_TO) -> str:
    return f"/login?return_to={quote(return_to, safe='')}"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def ask_for_link(
    browser: httpx.AsyncClient, email: str, return_to: str = RETURN_TO
) -> httpx.Response:
    """Open /login and post its form with `email`: the "check your inbox" answer."""
    page = await browser.get(login_path(return_to))
    assert page.status_code == 200, page.text
    form = form_of(page.text)
    return await browser.post(form.path, data={"email": email, **form.fields})


async def follow_link(browser: httpx.AsyncClient, link: str) -> httpx.Response:
    """Open the mailed link and press its button: the answer to that POST."""
    page = await browser.get(path_of(link))
    assert page.status_code == 200, page.text
    form = form_of(page.text)
    return await browser.post(form.path, data=form.fields)
