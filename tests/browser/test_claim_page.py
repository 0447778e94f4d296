"""The claim page in a real browser (spec §6.3, W12): Debian's Chromium, headless, driven by
Playwright (`executable_path`, never a downloaded browser), against a real `authledger serve`
on a loopback port, with the claim mail delivered by the mailer to a real SMTP sink.

`AUTHLEDGER_TEST_SCREENSHOTS=docs` also writes the README's pictures
(`docs/claim-page.png`, `docs/claim-page-link.png`); every run writes them to the test's
tmp_path. `AUTHLEDGER_TEST_CHROMIUM` names another Chromium than /usr/bin/chromium.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    Request,
    Response,
    async_playwright,
    expect,
)

from service.crypto.pii import Sealer
from tests.support.app_client import link_of
from tests.support.backends import Backend
from tests.support.serve_process import SECRETS, Server, authledger_env, serving
from tests.support.smtp_sink import SmtpSink
from workers.mail_templates import sender_for
from workers.mailer import Mailer, MailerConfig

CHROMIUM = Path(os.environ.get("AUTHLEDGER_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = os.environ.get("AUTHLEDGER_TEST_SCREENSHOTS")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)",
    ),
]

EMAIL = "ana.lopez@example.net"
VIEW = "/agent/auth/claim/view"
CHALLENGE = "/agent/auth/claim/attempt/challenge"
WAIT_MS = 10_000  # the longest any one browser step may take
# What the root Chromium needs here: no sandbox (Playwright's default), no GPU, and nothing
# that reaches out to Google's hosts from this closed network.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--disable-background-networking"]
# Runs before the page's own code in every document (CDP-injected, so not subject to the
# page's CSP): keeps every CSP violation the browser reports to the page.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


@pytest.fixture
async def server(backend: Backend, database_url: str) -> AsyncIterator[Server]:
    """`authledger serve` on a free port; its public URL is http://127.0.0.1:<port>."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    async with serving([], env) as started:
        yield started


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def inbox(server: Server, db: asyncpg.Pool) -> AsyncIterator[SmtpSink]:
    """The person's inbox: the mailer worker sends the outbox's claim mail to an SMTP sink."""
    secret = SECRETS["AUTHLEDGER_SECRET_KEY"]
    async with SmtpSink() as sink:
        config = MailerConfig(
            smtp_url=sink.url,
            public_url=server.url,
            sender=sender_for(server.url),
            send_timeout=5.0,
            lease=10.0,
            idle_timeout=1.0,
        )
        mailer = Mailer(db, config, secret_key=secret, sealer=Sealer(secret))
        sending = asyncio.create_task(mailer.run(), name="browser-test-mailer")
        try:
            yield sink
        finally:
            sending.cancel()
            async with asyncio.timeout(10):
                await asyncio.gather(sending, return_exceptions=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


async def minted(db: asyncpg.Pool) -> int:
    """How many one-time codes the log holds."""
    query = "SELECT count(*) FROM events WHERE type = 'claim.otp_issued'"
    return int(await db.fetchval(query))


def assert_locked_down(response: Response, headers: dict[str, str]) -> None:
    """No caching, and a Content-Security-Policy that allows no script, no framing, no
    foreign form target and no other resource: only the page's own hashed stylesheet."""
    where = f"{response.request.method} {urlsplit(response.url).path}"
    assert headers["cache-control"] == "no-store", where
    assert headers["content-type"] == "text/html; charset=utf-8", where
    policy = {
        name: values
        for name, *values in (d.split() for d in headers["content-security-policy"].split(";"))
    }
    assert policy["default-src"] == ["'none'"], where
    assert "script-src" not in policy, where  # falls back to default-src: no script at all
    assert len(policy["style-src"]) == 1, where
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='", policy["style-src"][0]), where
    assert policy["frame-ancestors"] == ["'none'"], where
    assert policy["form-action"] == ["'self'"], where
    assert policy["base-uri"] == ["'none'"], where
    assert "unsafe" not in headers["content-security-policy"], where
    assert headers["x-frame-options"] == "DENY", where
    assert headers["referrer-policy"] == "no-referrer", where


@dataclass
class Seen:
    """What a page did besides rendering: console lines, requests, uncaught errors."""

    console: list[ConsoleMessage] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)

    @classmethod
    def watching(cls, page: Page) -> Seen:
        seen = cls()
        page.on("console", seen.on_console)
        page.on("request", seen.on_request)
        page.on("pageerror", seen.on_error)
        return seen

    # Methods, not `list.append`: Playwright tags each handler (and a builtin takes no tags).
    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(message)

    def on_request(self, request: Request) -> None:
        self.requests.append(request)

    def on_error(self, error: Error) -> None:
        self.errors.append(error)


async def violations(page: Page) -> list[str]:
    found: list[str] = await page.evaluate("window.__cspViolations")
    return found


async def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    shot = await page.screenshot(path=tmp_path / name)
    if SCREENSHOTS:
        await asyncio.to_thread(Path(SCREENSHOTS, name).write_bytes, shot)


async def test_a_person_claims_in_chromium(
    server: Server, inbox: SmtpSink, db: asyncpg.Pool, browser: Browser, tmp_path: Path
) -> None:
    """The e-mailed link opens a script-free, no-store, strictly CSP-locked page naming the
    service, the address and the registration, with no code minted even in a JavaScript
    browser; pressing its button shows a 6-digit code (exactly one minted) that the agent
    then claims with over HTTP."""
    agent = server.http
    registered = await agent.post(
        "/agent/auth", json={"type": "anonymous", "requested_credential_type": "api_key"}
    )
    assert registered.status_code == 200, registered.text
    claim_token = registered.json()["claim_token"]
    registration_id = registered.json()["registration_id"]
    claim = {"claim_token": claim_token, "email": EMAIL}
    started = await agent.post("/agent/auth/claim", json=claim)
    assert started.status_code == 200, started.text
    [mail] = await inbox.wait_for(1)
    assert mail.rcpt_tos == (EMAIL,)
    link = link_of(mail)
    assert link.startswith(f"{server.url}{VIEW}?token=cvt_")
    link_token = parse_qs(urlsplit(link).query)["token"][0]

    context = await browser.new_context(viewport={"width": 720, "height": 440}, locale="en-US")
    context.set_default_timeout(WAIT_MS)
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    seen = Seen.watching(page)

    # The link: what is claimed, by whom, and a button; nothing minted, nothing else loaded.
    shown = await page.goto(link)
    assert shown is not None
    assert shown.status == 200
    assert_locked_down(shown, await shown.all_headers())
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "An AI agent asks to act for you"
    )
    body = page.locator("body")
    await expect(body).to_contain_text("An AI agent asks to act for you at authledger")
    await expect(page.locator("strong").filter(has_text=EMAIL)).to_have_count(1)
    await expect(page.locator("code")).to_have_text(registration_id)
    link_end = datetime.fromisoformat(started.json()["expires_at"])
    shown_end = await page.locator("time").get_attribute("datetime")
    assert shown_end is not None
    assert abs((datetime.fromisoformat(shown_end) - link_end).total_seconds()) < 1
    await expect(body).to_contain_text("If this was not you, close this page")
    button = page.get_by_role("button", name="Show my code")
    await expect(button).to_be_enabled()
    await expect(button).to_have_css("background-color", "rgb(31, 95, 191)")  # hashed style ran
    await expect(page.locator("#otp")).to_have_count(0)
    assert await page.evaluate("document.scripts.length") == 0
    await page.wait_for_load_state("networkidle")  # anything the page would do on its own
    await page.reload()  # a second look (or a link scanner) mints nothing either
    await page.wait_for_load_state("networkidle")
    assert await minted(db) == 0
    assert [(r.method, urlsplit(r.url).path) for r in seen.requests] == [("GET", VIEW)] * 2
    assert await violations(page) == []
    await screenshot(page, tmp_path, "claim-page-link.png")

    # The press: one POST of the link token to E7, answered with the code page.
    async with page.expect_response(lambda r: r.request.method == "POST") as answer_info:
        await button.click()
    answer = await answer_info.value
    assert answer.url == f"{server.url}{CHALLENGE}"
    assert answer.status == 200
    assert parse_qs(answer.request.post_data or "") == {"claim_attempt_token": [link_token]}
    assert_locked_down(answer, await answer.all_headers())
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your one-time code")
    await expect(page.locator("#otp")).to_have_text(re.compile(r"^\s*[0-9]{6}\s*$"))
    otp = (await page.locator("#otp").inner_text()).strip()
    await expect(page.get_by_role("button", name="Show a new code")).to_be_enabled()
    assert await minted(db) == 1
    assert await violations(page) == []
    await screenshot(page, tmp_path, "claim-page.png")

    assert seen.errors == []
    assert [m.text for m in seen.console if m.type in ("error", "warning")] == []
    await context.close()

    # The agent, given the code by the person, completes the claim.
    completed = await agent.post(
        "/agent/auth/claim/complete", json={"claim_token": claim_token, "otp": otp}
    )
    assert completed.status_code == 200, completed.text
    assert completed.json() == {"registration_id": registration_id, "status": "claimed"}
