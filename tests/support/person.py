"""The person's half of the v0.6 claim ceremony, driven over HTTP as a browser does it: sign in
by the mailed link (read from the SMTP sink), open the claim page (V4) the agent's
`verification_uri` leads to, and post its forms: the code with Approve (V5) or Deny.

One browser (its own cookies) per address and service, signed in once and again only when
its session has ended (the test clock moved past it), so a test that types many codes spends
one sign-in mail. When the page offers no form (its link was replaced or declined), the
person posts the form of a page they loaded before: its CSRF token is the session's, made
here from the session cookie as the page would have made it.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from service.crypto.tokens import token_hash
from service.signin.csrf import csrf_token
from service.signin.keys import SignInKeys
from service.signin.sessions import open_session
from tests.support.app_client import PUBLIC_URL, SECRET_KEY, Service
from tests.support.sign_in import ask_for_link, follow_link, forms_of, sign_in_link_of

CLAIM_PAGE = "/claim"
DENY = "/claim/deny"
SESSION = "__Host-authledger_session"  # PUBLIC_URL is https
_KEYS = SignInKeys.from_secret(SECRET_KEY)
_BROWSERS: dict[int, tuple[Service, dict[str, httpx.AsyncClient]]] = {}


def claim_path(link_token: str) -> str:
    return f"{CLAIM_PAGE}?claim_attempt_token={quote(link_token, safe='')}"


def browser_for(svc: Service, email: str) -> httpx.AsyncClient:
    """The browser of the person with `email` on `svc` (made on first use, signed out)."""
    entry = _BROWSERS.get(id(svc))
    if entry is None or entry[0] is not svc:
        entry = _BROWSERS[id(svc)] = (svc, {})
    browsers = entry[1]
    if email not in browsers:
        transport = svc.client._transport  # the same app, another cookie jar
        browsers[email] = httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL)
    return browsers[email]


async def sign_in(svc: Service, email: str, return_to: str) -> httpx.AsyncClient:
    """Sign the person in by the mailed link: the answer is 302 back to `return_to`."""
    browser = browser_for(svc, email)
    seen = len(svc.sink.received)
    asked = await ask_for_link(browser, email, return_to)
    assert asked.status_code == 200, asked.text
    number = seen
    while True:  # the next sign-in mail to this address (other mail may arrive between)
        number += 1
        mail = await svc.mail(number)
        if email in mail.rcpt_tos and "/login/email?token=" in mail.part("plain"):
            break
    done = await follow_link(browser, sign_in_link_of(mail))
    assert done.status_code == 302, done.text
    assert done.headers["location"] == PUBLIC_URL + return_to
    return browser


async def open_claim_page(svc: Service, link_token: str, email: str) -> httpx.Response:
    """V4 as the person signed in as `email` sees it (signing in first when needed)."""
    browser = browser_for(svc, email)
    page = await browser.get(claim_path(link_token))
    if page.status_code == 302:  # not signed in (yet, or any more)
        await sign_in(svc, email, claim_path(link_token))
        page = await browser.get(claim_path(link_token))
    return page


def _csrf(svc: Service, browser: httpx.AsyncClient, purpose: str) -> str:
    session = open_session(_KEYS, tenant_id=svc.tenant.tenant_id, issuer=PUBLIC_URL,
                           value=browser.cookies.get(SESSION), now=svc.clock.now())  # fmt: skip
    assert session is not None, "not signed in"
    return csrf_token(_KEYS, purpose, session.sid)


async def _post(
    svc: Service, link_token: str, email: str, path: str, purpose: str, **visible: str
) -> httpx.Response:
    """Open the claim page, then post its form for `path` (or, without one, the same form
    as loaded earlier) with `visible` typed in."""
    page = await open_claim_page(svc, link_token, email)
    browser = browser_for(svc, email)
    forms = [f for f in forms_of(page.text) if f.path == path]
    fields = forms[0].fields if forms else {
        "claim_attempt_token": link_token, "csrf": _csrf(svc, browser, purpose),
    }  # fmt: skip
    return await browser.post(path, data={**fields, **visible})


async def type_code(svc: Service, link_token: str, code: str, email: str) -> httpx.Response:
    """V5: the person types `code` on the link's page and approves."""
    return await _post(svc, link_token, email, CLAIM_PAGE, "claim", user_code=code)


async def decline(svc: Service, link_token: str, email: str) -> httpx.Response:
    """Deny on the link's page."""
    return await _post(svc, link_token, email, DENY, "claim_deny")


async def claimed_by(svc: Service, link_token: str) -> str:
    """The user the link's registration was claimed for (the claim keeps the link's hash)."""
    user_id = await svc.resources.pool.fetchval(
        "SELECT user_id FROM registrations WHERE attempt_token_hash = $1", token_hash(link_token)
    )
    assert isinstance(user_id, str), "the registration is not claimed"
    return user_id
