"""The whole service for e2e tests: the real app on the test's own database, real Resources
(Postgres, NATS), a manual clock, and the real mailer sending to a real SMTP sink.

`running_service` yields a `Service`: an httpx client the way an agent holds one, plus what a
test needs to look at (the mails the person gets, the event log, the read models).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from litestar import Litestar

from events.clock import ManualClock
from service.crypto.pii import Sealer
from service.http.app import create_app
from service.runtime.resources import Resources
from service.settings import Settings
from service.tenancy.config import TenantConfig
from tests.support.backends import Backend
from tests.support.outbound import OUTBOUND_ALLOW
from tests.support.smtp_sink import Received, SmtpSink
from workers.mailer import Mailer, MailerConfig

PUBLIC_URL = "https://auth.example.test"
SECRET_KEY = "k" * 48
ADMIN_TOKEN = "t" * 32
CLIENT_IP = "192.0.2.7"
_FORM = re.compile(
    r'<form method="post" action="([^"]+)">\s*'
    r'<input type="hidden" name="([^"]+)" value="([^"]+)">'
)
_OTP = re.compile(r'<p class="code" id="otp">([0-9]{6})</p>')


@dataclass
class Service:
    client: httpx.AsyncClient
    tenant: TenantConfig
    clock: ManualClock
    resources: Resources
    sink: SmtpSink

    async def head(self) -> int:
        """The log's head position: unchanged means nothing was written."""
        return await self.resources.store.head_position()

    async def count(self, event_type: str) -> int:
        query = "SELECT count(*) FROM events WHERE type = $1"
        return int(await self.resources.pool.fetchval(query, event_type))

    async def row(self, table: str, key: str, value: str) -> Mapping[str, Any]:
        found = await self.resources.pool.fetchrow(
            f"SELECT * FROM {table} WHERE {key} = $1",  # table and key are the test's literals
            value,
        )
        assert found is not None, f"no {table} row with {key} = {value}"
        return dict(found)

    async def mail(self, number: int) -> Received:
        """The `number`-th mail (1-based) the sink received, waiting for it if needed."""
        return (await self.sink.wait_for(number))[number - 1]

    async def register(self, **body: str) -> dict[str, Any]:
        response = await self.client.post("/agent/auth", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def anonymous(self) -> dict[str, Any]:
        return await self.register(type="anonymous", requested_credential_type="api_key")

    async def verified_email(self, email: str, kind: str = "access_token") -> dict[str, Any]:
        return await self.register(
            type="identity_assertion",
            assertion_type="verified_email",
            assertion=email,
            requested_credential_type=kind,
        )

    async def press_button(self, page: httpx.Response) -> httpx.Response:
        """What the browser does when the person presses the page's button."""
        action, field, value = form_of(page.text)
        return await self.client.post(action, data={field: value})


def link_of(mail: Received) -> str:
    """The claim page's URL from the mail's plain-text part."""
    found = re.search(r"https?://\S+/agent/auth/claim/view\?token=\S+", mail.part("plain"))
    assert found is not None, "no claim link in the mail"
    return found.group(0)


def link_token_of(mail: Received) -> str:
    return parse_qs(urlsplit(link_of(mail)).query)["token"][0]


def form_of(page: str) -> tuple[str, str, str]:
    """(action, field name, value) of the page's one form."""
    found = _FORM.search(page)
    assert found is not None, "no form on the page"
    action, field, value = (unescape(g) for g in found.groups())
    return action, field, value


def otp_of(page: str) -> str:
    found = _OTP.search(page)
    assert found is not None, "no code on the page"
    return found.group(1)


def settings_for(backend: Backend, database_url: str, **variables: str) -> Settings:
    env = {
        "AUTHLEDGER_DATABASE_URL": database_url,
        "AUTHLEDGER_NATS_URL": backend.nats_url,
        "AUTHLEDGER_ADMIN_TOKEN": ADMIN_TOKEN,
        "AUTHLEDGER_SECRET_KEY": SECRET_KEY,
        "AUTHLEDGER_PUBLIC_URL": PUBLIC_URL,
        "AUTHLEDGER_RATE_LIMITS": "off",  # tests register many times from CLIENT_IP; on if asked
        "AUTHLEDGER_OUTBOUND_ALLOW": OUTBOUND_ALLOW,  # the IdP and receivers are on 127.0.0.1
        **{f"AUTHLEDGER_{name}": value for name, value in variables.items()},
    }
    return Settings.from_env(env, "serve")


def asgi_client(app: Litestar) -> httpx.AsyncClient:
    """A client calling `app` in the test's own loop (Litestar's AsyncTestClient runs the app
    in another thread's loop, where the pool's connections cannot be used)."""
    # Litestar types its ASGI callable more precisely than httpx's protocol accepts.
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 50123))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL)


def client_at(svc: Service, backend: Backend, database_url: str, ip: str) -> httpx.AsyncClient:
    """Another client address on the same service (same resources: limiter, store, sealer),
    e.g. the person's browser beside the agent, or an attacker's many addresses."""
    app = create_app(settings_for(backend, database_url), resources=svc.resources)
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL)


@asynccontextmanager
async def running_service(
    backend: Backend, database_url: str, **variables: str
) -> AsyncIterator[Service]:
    """The app, its mailer and an SMTP sink, configured by AUTHLEDGER_* `variables`."""
    settings = settings_for(backend, database_url, **variables)
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    resources = await Resources.open(settings, pool_size=4, clock=clock)
    try:
        async with SmtpSink() as sink:
            config = MailerConfig(
                smtp_url=sink.url,
                public_url=PUBLIC_URL,
                send_timeout=5.0,
                lease=10.0,
                idle_timeout=1.0,
            )
            mailer = Mailer(
                resources.pool,
                config,
                secret_key=settings.secret_key or SECRET_KEY,
                sealer=Sealer(settings.secret_key or SECRET_KEY),
                clock=clock,
                tenants=resources.tenants,
            )
            sending = asyncio.create_task(mailer.run(), name="test-mailer")
            try:
                async with asgi_client(create_app(settings, resources=resources)) as client:
                    tenant = TenantConfig.from_settings(settings)
                    yield Service(client, tenant, clock, resources, sink)
            finally:
                sending.cancel()
                async with asyncio.timeout(10):  # a mailer that ignored the cancel fails here
                    await asyncio.gather(sending, return_exceptions=True)
    finally:
        await resources.close()
