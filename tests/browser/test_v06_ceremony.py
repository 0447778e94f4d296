"""One whole v0.6 claim ceremony with the person in a real browser (design section 10.2):
Debian's Chromium, headless, driven by Playwright, against a real `authledger serve` on a
loopback port whose default tenant opens the v0.6 door, the sign-in mail delivered by the
mailer to a real SMTP sink. The agent registers with `service_auth` and polls the claim
grant over HTTP; the person opens `verification_uri`, asks for a sign-in link, follows it
from the mail, and types the agent's code on the claim page; the agent's next poll gets its
token. Every page is script-free under the pages' CSP; the session cookie is HttpOnly, Lax
and, on loopback http, not Secure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from playwright.async_api import Browser, Page, Response, expect

from service.tenancy.config import CLAIM_GRANT
from tests.browser.test_claim_page import (
    RECORD_VIOLATIONS,
    WAIT_MS,
    Seen,
    assert_locked_down,
    browser,
    db,
    inbox,
    screenshot,
    violations,
)
from tests.browser.test_claim_page import pytestmark as browser_marks
from tests.support.backends import Backend
from tests.support.serve_process import SECRETS, Server, authledger_env, serving
from tests.support.sign_in import sign_in_link_of
from tests.support.smtp_sink import SmtpSink

__all__ = ["browser", "db", "inbox"]  # fixtures this module's test uses
pytestmark = browser_marks
EMAIL = "ana.lopez@example.net"


@pytest.fixture
async def server(backend: Backend, database_url: str) -> AsyncIterator[Server]:
    """`authledger serve` on a free port with both doors open on its default tenant."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url,
        AUTHLEDGER_DOORS="v1 v06", **SECRETS,
    )  # fmt: skip
    async with serving([], env) as started:
        yield started


async def locked_down(answer: Response | None) -> None:
    assert answer is not None
    assert answer.status == 200, await answer.text()
    assert_locked_down(answer, await answer.all_headers())


async def no_script(page: Page) -> None:
    assert await page.evaluate("document.scripts.length") == 0
    assert await violations(page) == []


async def test_a_v06_ceremony_in_chromium(
    server: Server, inbox: SmtpSink, db: asyncpg.Pool, browser: Browser, tmp_path: Path
) -> None:
    """service_auth → pending poll → the person signs in by the mailed link and approves
    with the agent's code in Chromium → the agent's poll delivers a token the API takes."""
    agent = server.http
    registered = await agent.post(
        "/agent/identity", json={"type": "service_auth", "login_hint": EMAIL}
    )
    assert registered.status_code == 200, registered.text
    handout = registered.json()
    claim_token, claim = handout["claim_token"], handout["claim"]
    grant = {"grant_type": CLAIM_GRANT, "claim_token": claim_token}
    pending = await agent.post("/oauth2/token", data=grant)
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")

    context = await browser.new_context(viewport={"width": 720, "height": 560}, locale="en-US")
    context.set_default_timeout(WAIT_MS)
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    seen = Seen.watching(page)

    # verification_uri: the sign-in, which mails a link.
    await locked_down(await page.goto(claim["verification_uri"]))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await page.get_by_label("Your e-mail address").fill(EMAIL)
    async with page.expect_navigation() as sent:
        await page.get_by_role("button", name="Mail me a sign-in link").click()
    await locked_down(await sent.value)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    await no_script(page)

    # The mail's link, opened in the same browser; its button signs in and returns to /claim.
    [mail] = await inbox.wait_for(1)
    assert mail.rcpt_tos == (EMAIL,)
    await locked_down(await page.goto(sign_in_link_of(mail)))
    async with page.expect_navigation() as signed:
        await page.get_by_role("button", name="Sign in").click()
    await locked_down(await signed.value)
    assert urlsplit(page.url).path == "/claim"
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "An AI agent asks to act for you"
    )
    await expect(page.locator("body")).to_contain_text(f"You are signed in as {EMAIL}")
    [session] = [c for c in await context.cookies() if c["name"] == "authledger_session"]
    assert (session["httpOnly"], session["sameSite"], session["secure"]) == (True, "Lax", False)
    await no_script(page)
    await screenshot(page, tmp_path, "v06-claim-page.png")

    # The code the agent shows, typed and approved.
    await page.get_by_label("The code your agent shows").fill(claim["user_code"])
    async with page.expect_navigation() as approved:
        await page.get_by_role("button", name="Approve").click()
    await locked_down(await approved.value)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Approved")
    await no_script(page)
    assert seen.errors == []
    assert [m.text for m in seen.console if m.type in ("error", "warning")] == []
    hosts = {urlsplit(r.url).netloc for r in seen.requests}
    assert hosts == {urlsplit(server.url).netloc}  # nothing loaded from anywhere else
    await context.close()

    claimed = await db.fetchval(
        "SELECT payload->>'auth_method' FROM events WHERE type = 'registration.claimed'"
    )
    assert claimed == "email_link"
    delivered = await agent.post("/oauth2/token", data=grant)
    assert delivered.status_code == 200, delivered.text
    token = delivered.json()["access_token"]
    me = await agent.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["registration_id"] == handout["registration_id"]
