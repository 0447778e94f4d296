"""After full ceremonies over HTTP, no table and no log line holds a secret or personal data
in plain text (spec W2, W6, W7), and the key in use follows its claim."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from tests.support.app_client import CLIENT_IP, Service, link_of, otp_of, running_service
from tests.support.backends import Backend
from tests.support.waiting import wait_until

ANON_EMAIL = "dora.person@example.net"
EMAIL_FLOW = "eve.person@example.net"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as service:
        yield service


async def _scopes_seen(svc: Service, key: str, want: list[str]) -> list[str]:
    """/api/me's scopes for `key`, waiting briefly for the event feed to carry a change."""

    async def scopes() -> list[str] | None:
        me = await svc.client.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200
        seen: list[str] = me.json()["scopes"]
        return seen if seen == want else None

    return await wait_until(scopes, within=2.0, what=f"/api/me showing the scopes {want}")


async def _ceremony(svc: Service, claim_token: str, email: str | None, mail: int) -> str:
    """Claim (anonymous only), follow mail number `mail`'s link, press the button; return
    the code."""
    if email is not None:
        started = await svc.client.post(
            "/agent/auth/claim", json={"claim_token": claim_token, "email": email}
        )
        assert started.status_code == 200
    page = await svc.client.get(link_of(await svc.mail(mail)))
    assert page.status_code == 200
    return otp_of((await svc.press_button(page)).text)


async def test_no_secret_or_email_in_tables_or_logs(
    svc: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys, tokens, codes, emails and client IPs never reach a table or a log line."""
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        anonymous = await svc.anonymous()
        key = anonymous["credential"]
        assert await _scopes_seen(svc, key, ["api.read"]) == ["api.read"]
        anon_code = await _ceremony(svc, anonymous["claim_token"], ANON_EMAIL, 1)
        done = await svc.client.post(
            "/agent/auth/claim/complete",
            json={"claim_token": anonymous["claim_token"], "otp": anon_code},
        )
        assert done.status_code == 200
        assert await _scopes_seen(svc, key, ["api.read", "api.write"]) == [
            "api.read",
            "api.write",
        ]

        email_reg = await svc.verified_email(EMAIL_FLOW)
        email_code = await _ceremony(svc, email_reg["claim_token"], None, 2)
        issued = await svc.client.post(
            "/agent/auth/claim/complete",
            json={"claim_token": email_reg["claim_token"], "otp": email_code},
        )
        assert issued.status_code == 200
        token = issued.json()["credential"]
        me = await svc.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200

    links = [link_of(m).split("token=", 1)[1] for m in svc.sink.received]
    assert len(links) == 2
    secrets = {
        "api key": key,
        "access token": token,
        "claim token": anonymous["claim_token"],
        "email claim token": email_reg["claim_token"],
        "anonymous email": ANON_EMAIL,
        "flow email": EMAIL_FLOW,
        "client ip": CLIENT_IP,
        **{f"link token {n}": link for n, link in enumerate(links)},
    }
    pool = svc.resources.pool
    tables = [
        r["tablename"]
        for r in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]
    assert {"events", "registrations", "credentials", "users", "mail_outbox"} <= set(tables)
    for table in tables:
        dump = await pool.fetchval(
            f"SELECT coalesce(string_agg(t::text, ' '), '') FROM \"{table}\" t"
        )
        for name, value in secrets.items():
            assert value not in dump, f"{name} in plain text in table {table}"
    # The service's own lines: httpx logs for the test's client (the agent, the person's
    # browser) and mail.log for the test's SMTP server (the person's mail provider).
    others = ("httpx", "mail.log")
    service_lines = [r.getMessage() for r in caplog.records if not r.name.startswith(others)]
    log_text = " ".join(str(entry) for entry in logs) + " ".join(service_lines)
    assert logs, "the ceremony logged nothing: the scan would prove nothing"
    for name, value in {**secrets, "anonymous code": anon_code, "email code": email_code}.items():
        where = log_text.find(value)
        assert where < 0, f"{name} in a log line: {log_text[max(0, where - 300) : where + 50]}"
