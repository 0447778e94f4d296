"""Attack (issue 12, finding 7): server-side request forgery through the URLs the service
fetches on its own: a webhook subscriber's URL (revocation push) and a trusted agent provider's
keys URL (JWKS). Whoever can register one, or change what its host name resolves to, could
make the service talk to its own loopback, the private network or the cloud's metadata
endpoint (169.254.169.254), with the service's network position and, for webhooks, its
signed SETs and the subscriber's bearer secret.

Before the fix both clients connected wherever the URL's host resolved to. Now every outbound
connection resolves the host once, checks each address (loopback, private, link-local,
CGNAT, unspecified, multicast, reserved, metadata, and their IPv4-mapped forms are refused
unless AUTHLEDGER_OUTBOUND_ALLOW admits them), and connects to the address it checked;
redirects are not followed (and would be checked again). Registration refuses internal
address literals and `localhost` at once with a 400.

These tests run real listeners on loopback and count the TCP connections they accept: with an
empty allow-list, none may arrive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from service.commands.context import Caller
from service.commands.trust_list import trust
from service.domain.subscriptions import RetryPolicy
from service.outbound.policy import parse_allow, policy_of
from service.outbound.transport import Guard, OutboundRefused, guarded_client, refused_by
from tests.support.app_client import ADMIN_TOKEN, SECRET_KEY, Service, running_service
from tests.support.backends import Backend
from tests.support.id_jag import jag, present
from tests.support.idp import JWKS_PATH, IdentityProvider
from tests.support.outbound import LOOPBACK_ALLOWED, OUTBOUND_ALLOW
from workers.revocation_push import PushConfig, PushWorker

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SUBSCRIPTIONS = "/admin/subscriptions"
ISSUERS = "/admin/trusted-issuers"
METADATA_URL = "https://169.254.169.254/latest/meta-data/iam"
CONFIG = PushConfig(
    policy=RetryPolicy(max_attempts=5, base=30.0, cap=60.0), timeout=3.0, lease=30.0,
    idle_timeout=1.0,
)  # fmt: skip


class Listener:
    """A TCP listener that counts the connections it accepts and answers any request 202."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.connections = 0
        self.requests: list[bytes] = []
        self.status_line = b"HTTP/1.1 202 Accepted"
        self.extra_headers = b""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length:")),
                0,
            )  # fmt: skip
            await reader.readexactly(length)
            self.requests.append(head)
            writer.write(self.status_line + b"\r\ncontent-length: 0\r\nconnection: close\r\n"
                         + self.extra_headers + b"\r\n")  # fmt: skip
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _subscribe(svc: Service, url: str) -> str:
    response = await svc.client.post(SUBSCRIPTIONS, json={"url": url}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["subscription_id"])


async def _revoke_one(svc: Service) -> None:
    """A fresh anonymous key, revoked by the operator: one event every subscriber wants."""
    registered = await svc.anonymous()
    response = await svc.client.post(
        "/admin/revocations",
        json={"registration_id": registered["registration_id"], "reason": "incident"},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text


async def _shown(svc: Service) -> dict[str, dict[str, Any]]:
    response = await svc.client.get(SUBSCRIPTIONS, headers=ADMIN)
    assert response.status_code == 200
    return {s["url"]: s for s in response.json()["subscriptions"]}


def _worker(svc: Service, allow: tuple[str, ...]) -> PushWorker:
    return PushWorker(
        svc.resources.pool, secret_key=SECRET_KEY, tenant=svc.tenant, clock=svc.clock,
        config=CONFIG, jitter=lambda: 1.0, outbound_allow=allow,
    )  # fmt: skip


async def _run_once(worker: PushWorker) -> int:
    try:
        async with asyncio.timeout(30):
            return await worker.run_once()
    finally:
        await worker.close()


@pytest.fixture
async def strict(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    """The service with the production default: AUTHLEDGER_OUTBOUND_ALLOW empty."""
    async with running_service(
        backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true", OUTBOUND_ALLOW=""
    ) as svc:
        yield svc


# -- webhooks --------------------------------------------------------------------------------


async def test_pushes_to_internal_addresses_never_connect_and_back_off(
    backend: Backend, database_url: str
) -> None:
    """Subscriptions to http://127.0.0.1 and http://localhost (a real listener behind both)
    and to the metadata address: a push worker with an empty allow-list makes no connection,
    records a failed try naming the address class, and does not try again before the
    back-off; with loopback allowed the same subscriptions are delivered, and the metadata
    one is still refused."""
    registered_with = f"{OUTBOUND_ALLOW} 169.254.169.254"  # the registration check passes
    async with (
        running_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true",
                        OUTBOUND_ALLOW=registered_with) as svc,
        Listener() as listener,
    ):  # fmt: skip
        loopback = [
            f"http://127.0.0.1:{listener.port}/events",
            f"http://localhost:{listener.port}/events",
        ]
        for url in [*loopback, METADATA_URL]:
            await _subscribe(svc, url)
        await _revoke_one(svc)

        assert await _run_once(_worker(svc, ())) == 3
        assert listener.connections == 0
        shown = await _shown(svc)
        for url in loopback:
            assert shown[url]["last_error"] == "address refused: loopback"
        assert shown[METADATA_URL]["last_error"] == "address refused: metadata"
        for subscription in shown.values():
            assert (subscription["delivered"], subscription["failed_attempts"]) == (0, 1)
            assert subscription["status"] == "active"
            assert subscription["retrying"]["next_attempt_at"] is not None
        assert await _run_once(_worker(svc, ())) == 0  # backed off: nothing is due yet
        assert listener.connections == 0

        svc.clock.advance(timedelta(seconds=CONFIG.policy.cap * 2))
        assert await _run_once(_worker(svc, LOOPBACK_ALLOWED)) == 3
        assert len(listener.requests) == 2
        assert all(r.startswith(b"POST /events ") for r in listener.requests)
        shown = await _shown(svc)
        assert [shown[url]["delivered"] for url in loopback] == [1, 1]
        assert shown[METADATA_URL]["last_error"] == "address refused: metadata"
        assert shown[METADATA_URL]["failed_attempts"] == 2


async def test_internal_webhook_urls_are_refused_when_registered(
    strict: Service, backend: Backend, database_url: str
) -> None:
    """With an empty allow-list, adding (or changing to) a subscription whose host is an
    internal address literal, in any spelling, or `localhost`, is a 400 naming the address
    class and writes nothing; with loopback allowed, loopback URLs are accepted."""
    head = await strict.head()
    for url, reason in [
        ("http://127.0.0.1:9/events", "loopback"),
        ("http://localhost:9/events", "loopback"),
        ("http://LOCALHOST.:9/events", "loopback"),
        ("https://[::ffff:127.0.0.1]/events", "loopback"),
        ("https://2130706433/events", "loopback"),
        ("https://0x7f.1/events", "loopback"),
        ("https://169.254.169.254/latest", "metadata"),
        ("https://[::ffff:a9fe:a9fe]/latest", "metadata"),
        ("https://[fd00:ec2::254]/latest", "metadata"),
        ("https://10.1.2.3/events", "private"),
        ("https://[fd12::1]/events", "private"),
        ("https://100.64.0.1/events", "cgnat"),
        ("https://169.254.1.1/events", "link-local"),
        ("https://[fe80::1]/events", "link-local"),
        ("https://0.0.0.0/events", "unspecified"),
        ("https://224.0.0.1/events", "multicast"),
    ]:
        response = await strict.client.post(SUBSCRIPTIONS, json={"url": url}, headers=ADMIN)
        assert response.status_code == 400, url
        body = response.json()
        assert body["error"] == "invalid_request"
        assert body["message"].startswith("url: ")
        assert f"not a public address ({reason})" in body["message"], url
    assert await strict.head() == head
    async with running_service(
        backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true", OUTBOUND_ALLOW="127.0.0.0/8"
    ) as allowed:
        sid = await _subscribe(allowed, "http://127.0.0.1:9/events")
        change = await allowed.client.patch(
            f"{SUBSCRIPTIONS}/{sid}", json={"url": "https://10.0.0.1/events"}, headers=ADMIN
        )
        assert change.status_code == 400
        assert "not a public address (private)" in change.json()["message"]


# -- JWKS ------------------------------------------------------------------------------------


async def test_a_trusted_issuer_with_loopback_keys_is_refused_not_fetched(strict: Service) -> None:
    """A trusted provider whose keys URL is on loopback (by address or by a name resolving
    there), on the trust list (an entry made before this check, or whose name resolves
    inside later): its ID-JAG is refused `invalid_signature` (§7.4, the keys cannot be had),
    the provider never gets a connection, and the refusal is counted."""
    async with IdentityProvider() as by_address, IdentityProvider() as by_name:
        ctx = await strict.resources.command_context()
        operator = Caller(actor="admin")
        await trust(ctx, by_address.trusted(), operator)
        named = f"http://localhost:{by_name.port}{JWKS_PATH}"
        await trust(ctx, by_name.trusted(jwks_uri=named), operator)
        head = await strict.head()
        for idp in (by_address, by_name):
            response = await present(strict, jag(strict, idp))
            assert response.status_code == 400, response.text
            assert response.json()["error"] == "invalid_signature"
            assert idp.connections == 0
            assert idp.jwks_requests == 0
        assert await strict.head() == head
        metrics = strict.resources.metrics
        assert metrics is not None
        refused = metrics.registry.get_sample_value(
            "authledger_outbound_refused_total", {"purpose": "jwks", "reason": "loopback"}
        )
        assert refused == 2


async def test_internal_keys_urls_are_refused_when_trusted(
    strict: Service, backend: Backend, database_url: str
) -> None:
    """With an empty allow-list, trusting a provider whose keys URL (its pinned `jwks_uri`,
    else its issuer's) is an internal address literal is a 400 that writes nothing; with the
    allow-list set, the same provider is trusted and its ID-JAG accepted, its keys fetched."""
    async with IdentityProvider() as idp:
        head = await strict.head()
        for body, field, reason in [
            ({"issuer": idp.issuer, "jwks_uri": idp.jwks_url}, "jwks_uri", "loopback"),
            ({"issuer": "https://idp.example", "jwks_uri": METADATA_URL}, "jwks_uri", "metadata"),
            ({"issuer": "https://[::ffff:10.0.0.7]"}, "issuer", "private"),
            ({"issuer": "https://169.254.169.254"}, "issuer", "metadata"),
        ]:
            response = await strict.client.post(ISSUERS, json=body, headers=ADMIN)
            assert response.status_code == 400, body
            assert response.json()["error"] == "invalid_request"
            message = response.json()["message"]
            assert message.startswith(f"{field}: ")
            assert f"not a public address ({reason})" in message
        assert await strict.head() == head
        assert idp.connections == 0

        async with running_service(
            backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true", OUTBOUND_ALLOW=OUTBOUND_ALLOW
        ) as allowed:
            trusted = await allowed.client.post(
                ISSUERS, json={"issuer": idp.issuer, "jwks_uri": idp.jwks_url}, headers=ADMIN
            )
            assert trusted.status_code == 201, trusted.text
            response = await present(allowed, jag(allowed, idp))
            assert response.status_code == 200, response.text
            assert idp.jwks_requests == 1


# -- the connection itself -------------------------------------------------------------------


async def test_every_spelling_of_loopback_is_refused_when_connecting() -> None:
    """With an empty allow-list no spelling of a loopback address reaches a listener there:
    by number, by name, IPv4-mapped IPv6, the resolver's short and decimal IPv4 forms, ::1;
    with loopback allowed, each one connects."""
    async with Listener("127.0.0.1") as v4, Listener("::1") as v6:
        urls = [
            f"http://127.0.0.1:{v4.port}/",
            f"http://localhost:{v4.port}/",
            f"http://[::ffff:127.0.0.1]:{v4.port}/",
            f"http://[::ffff:7f00:1]:{v4.port}/",
            f"http://127.1:{v4.port}/",
            f"http://2130706433:{v4.port}/",
            f"http://[::1]:{v6.port}/",
        ]
        strict = Guard(policy_of(()), "test")
        async with guarded_client(strict, timeout=5) as client:
            for url in urls:
                with pytest.raises(httpx.ConnectError) as refused:
                    await client.get(url)
                found = refused_by(refused.value)
                assert found is not None, url
                assert found.reason == "loopback", url
        assert (v4.connections, v6.connections) == (0, 0)
        assert strict.refused == {"loopback": len(urls)}
        allowed = Guard(policy_of(LOOPBACK_ALLOWED), "test")
        async with guarded_client(allowed, timeout=5) as client:
            for url in urls:
                assert (await client.get(url)).status_code == 202, url
        assert (v4.connections, v6.connections) == (len(urls) - 1, 1)


async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    """DNS rebinding: the name is resolved once, and the connection is made to the address
    that passed the check, never to what a second lookup says. A name answering with an
    allowed and a refused address is refused as a whole."""
    answers = {
        "rebind.test": [["127.0.0.2"], ["127.0.0.1"]],
        "mixed.test": [["127.0.0.2", "127.0.0.1"]],
    }
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return answers[host].pop(0)

    guard = Guard(policy_of(parse_allow("127.0.0.2")), "test", resolve=resolve)
    async with (
        Listener("127.0.0.2") as checked,
        Listener("127.0.0.1") as internal,
        guarded_client(guard, timeout=5) as client,
    ):
        response = await client.post(f"http://rebind.test:{checked.port}/", content=b"x")
        assert response.status_code == 202
        assert lookups == ["rebind.test"]
        assert checked.requests[0].split(b"\r\n")[0] == b"POST / HTTP/1.1"
        assert b"host: rebind.test" in checked.requests[0].lower()
        with pytest.raises(httpx.ConnectError) as refused:
            await client.get(f"http://mixed.test:{internal.port}/")
        found = refused_by(refused.value)
        assert isinstance(found, OutboundRefused)
        assert (found.address, found.reason) == ("127.0.0.1", "loopback")
        assert internal.connections == 0
        assert dict(guard.refused) == {"loopback": 1}


async def test_a_redirect_to_an_internal_address_is_checked_again() -> None:
    """Even a client told to follow redirects cannot be sent from an allowed address to a
    refused one: the next hop's connection passes the same check."""
    guard = Guard(policy_of(parse_allow("127.0.0.2")), "test")
    async with (
        Listener("127.0.0.2") as allowed,
        Listener("127.0.0.1") as internal,
        guarded_client(guard, timeout=5) as client,
    ):
        allowed.status_line = b"HTTP/1.1 302 Found"
        allowed.extra_headers = f"location: http://127.0.0.1:{internal.port}/\r\n".encode()
        with pytest.raises(httpx.ConnectError) as refused:
            await client.get(f"http://127.0.0.2:{allowed.port}/", follow_redirects=True)
        assert refused_by(refused.value) is not None
        assert allowed.connections == 1
        assert internal.connections == 0
