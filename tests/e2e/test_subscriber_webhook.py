"""The revocation webhook (`subscriber/webhook.py`) end to end: the real app (its admin API,
JWKS and `/admin/revocations`), the real push worker, and the webhook served by uvicorn on
loopback in the test's loop, registered through `POST /admin/subscriptions`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service.domain.subscriptions import RetryPolicy
from subscriber.webhook import RevocationWebhook, WebhookConfig
from tests.support.app_client import ADMIN_TOKEN, SECRET_KEY, Service, running_service
from tests.support.backends import Backend
from tests.support.outbound import LOOPBACK_ALLOWED
from tests.support.waiting import wait_until
from workers.revocation_push import PushConfig, PushWorker

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
AUDIENCE = "https://rs.example/revocations"
SECRET = "whsec_" + "W" * 26
WAIT = 20.0
CONFIG = PushConfig(policy=RetryPolicy(max_attempts=3, base=1.0, cap=60.0), timeout=10.0,
                    lease=30.0, idle_timeout=1.0)  # fmt: skip


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as s:
        yield s


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: the test runner owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@asynccontextmanager
async def served(app: RevocationWebhook) -> AsyncIterator[str]:
    """`app` served by uvicorn on 127.0.0.1 and a free port; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, lifespan="on", ws="none", log_config=None, access_log=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), what="uvicorn started")
        assert not task.done(), "uvicorn stopped while starting"
        yield f"http://127.0.0.1:{port}/authledger/revocations"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
        sock.close()


@asynccontextmanager
async def pushing(svc: Service) -> AsyncIterator[PushWorker]:
    """The push worker on the app's database and clock, as `authledger worker` runs it."""
    worker = PushWorker(svc.resources.pool, secret_key=SECRET_KEY, tenant=svc.tenant,
                        clock=svc.clock, config=CONFIG, jitter=lambda: 0.5,
                        outbound_allow=LOOPBACK_ALLOWED)  # fmt: skip
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def api_key(svc: Service) -> tuple[str, str]:
    """A new anonymous API key and its credential id."""
    key = (await svc.anonymous())["credential"]
    me = await svc.client.get("/api/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200, me.text
    return key, me.json()["credential_id"]


async def revoke(svc: Service, credential_id: str) -> int:
    """Revoked by the operator through the admin API; the revocation's log position."""
    answer = await svc.client.post(
        "/admin/revocations", json={"credential_id": credential_id, "reason": "leak"},
        headers=ADMIN,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    position: int = await svc.resources.pool.fetchval(
        "SELECT position FROM events WHERE stream_id = $1 AND type = 'credential.revoked'",
        credential_id,
    )
    return position


async def subscription(svc: Service, sid: str) -> dict[str, Any]:
    answer = await svc.client.get(f"/admin/subscriptions/{sid}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    shown: dict[str, Any] = answer.json()
    return shown


async def test_a_revoked_api_key_reaches_the_webhook_state_and_stays_after_a_restart(
    svc: Service, tmp_path: Path
) -> None:
    """Register the webhook, revoke a key through the admin API: the push worker's SET is
    verified with the app's JWKS, the key is `is_revoked` from the SET alone (its token hash
    prefix; no admin token) before the 202, the subscription's cursor moves; a replay (same
    jti) changes nothing; reopened from its file, the state still says so."""
    path = tmp_path / "revoked.db"
    config = WebhookConfig(issuer=svc.tenant.issuer, audience=AUDIENCE, secret=SECRET,
                           state_path=path)  # fmt: skip
    hook = RevocationWebhook(config, http=svc.client)  # the app's JWKS and admin API
    live, _ = await api_key(svc)
    async with served(hook) as url:
        made = await svc.client.post(
            "/admin/subscriptions", json={"url": url, "audience": AUDIENCE, "secret": SECRET},
            headers=ADMIN,
        )  # fmt: skip
        assert made.status_code == 201, made.text
        sid = made.json()["subscription_id"]
        key, credential_id = await api_key(svc)
        position = await revoke(svc, credential_id)
        async with pushing(svc) as worker:
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered == 1), WAIT)
            assert hook.is_revoked(key)
            assert hook.is_revoked_credential(credential_id)
            assert not hook.is_revoked(live)
            assert (hook.incomplete, hook.stats.accepted, hook.stats.pulls) == (frozenset(), 1, 0)
            shown = await subscription(svc, sid)
            assert (shown["cursor"], shown["last_status"], shown["delivered"]) == (
                position, 202, 1)  # fmt: skip
            again = {"from_position": position - 1}
            replay = await svc.client.post(
                f"/admin/subscriptions/{sid}/replay", json=again, headers=ADMIN
            )
            assert replay.status_code == 200, replay.text
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered == 2), WAIT)
        assert (hook.stats.accepted, hook.stats.duplicates, hook.stats.refused) == (1, 1, 0)
        assert len(hook) == 1
    assert worker.stats.failed == 0
    reopened = RevocationWebhook(config)  # shut down by uvicorn's lifespan: from the file
    try:
        assert reopened.is_revoked(key)
        assert reopened.is_revoked_credential(credential_id)
        assert not reopened.is_revoked(live)
    finally:
        await reopened.aclose()


async def test_a_webhook_with_another_secret_is_dead_lettered_not_fed(
    svc: Service, tmp_path: Path
) -> None:
    """The subscription's secret is not the one the webhook expects: RFC 8935's 400
    `authentication_failed`, which the push worker treats as final (dead letter), and the
    state holds nothing."""
    config = WebhookConfig(issuer=svc.tenant.issuer, audience=AUDIENCE, secret=SECRET,
                           state_path=tmp_path / "revoked.db")  # fmt: skip
    hook = RevocationWebhook(config, http=svc.client)
    async with served(hook) as url:
        made = await svc.client.post(
            "/admin/subscriptions",
            json={"url": url, "audience": AUDIENCE, "secret": "whsec_" + "X" * 26},
            headers=ADMIN,
        )  # fmt: skip
        assert made.status_code == 201, made.text
        _, credential_id = await api_key(svc)
        await revoke(svc, credential_id)
        async with pushing(svc) as worker:
            await asyncio.wait_for(worker.wait_for(lambda s: s.dead_lettered == 1), WAIT)
        shown = await subscription(svc, made.json()["subscription_id"])
        assert shown["status"] == "dead_letter"
        assert shown["dead_letter"]["error"] == "http 400 authentication_failed"
        assert (len(hook), hook.stats.refused) == (0, 1)
