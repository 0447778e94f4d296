"""Revocation push end to end: subscriptions made through the admin API of the real app,
revocations made through it too, the push worker delivering to a real HTTP receiver, and the
SETs checked against the keys the app publishes at /.well-known/jwks.json."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import jwt
import pytest

from service.domain.subscriptions import RetryPolicy
from service.push.sets import CREDENTIAL_CHANGE, set_jti
from tests.support.app_client import ADMIN_TOKEN, SECRET_KEY, Service, running_service
from tests.support.backends import Backend
from tests.support.outbound import LOOPBACK_ALLOWED
from tests.support.set_receiver import SetReceiver
from workers.revocation_push import PushConfig, PushStats, PushWorker

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PATH = "/admin/subscriptions"
WAIT = 15.0
SECRET = "whsec_" + "Q" * 26
CONFIG = PushConfig(
    policy=RetryPolicy(max_attempts=3, base=1.0, cap=60.0), timeout=5.0, lease=30.0,
    idle_timeout=1.0,
)  # fmt: skip
PAST_ANY_WAIT = timedelta(seconds=61)


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as s:
        yield s


@asynccontextmanager
async def pushing(svc: Service) -> AsyncIterator[PushWorker]:
    """The push worker on the app's database and clock, as `authledger worker` runs it."""
    worker = PushWorker(
        svc.resources.pool, secret_key=SECRET_KEY, tenant=svc.tenant, clock=svc.clock,
        config=CONFIG, jitter=lambda: 0.5, outbound_allow=LOOPBACK_ALLOWED,
    )  # fmt: skip
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()


def failed_at_least(count: int) -> Callable[[PushStats], bool]:
    return lambda stats: stats.failed >= count


async def subscribe(svc: Service, **body: Any) -> dict[str, Any]:
    response = await svc.client.post(PATH, json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def revoke_one(svc: Service) -> tuple[str, int, str]:
    """A new anonymous key revoked by the operator: (credential id, position, event id)."""
    registered = await svc.anonymous()
    response = await svc.client.post(
        "/admin/revocations",
        json={"registration_id": registered["registration_id"], "reason": "incident 7"},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    [credential_id] = response.json()["credential_ids"]
    row = await svc.resources.pool.fetchrow(
        "SELECT position, event_id FROM events WHERE stream_id = $1 AND type = $2",
        credential_id,
        "credential.revoked",
    )
    assert row is not None
    return credential_id, row["position"], str(row["event_id"])


async def listed(svc: Service) -> list[dict[str, Any]]:
    response = await svc.client.get(PATH, headers=ADMIN)
    assert response.status_code == 200
    subscriptions: list[dict[str, Any]] = response.json()["subscriptions"]
    return subscriptions


async def test_delivered_sets_verify_with_the_service_jwks(svc: Service) -> None:
    """The receiver gets an RFC 8935 push whose SET verifies with the app's published key and
    carries the CAEP credential-change of the revocation; the secret is only in its header."""
    async with SetReceiver() as receiver:
        created = await subscribe(svc, url=receiver.url, secret=SECRET)
        assert (created["status"], created["has_secret"]) == ("active", True)
        assert created["cursor"] == await svc.head() - 1  # from the head when it was made
        credential_id, position, event_id = await revoke_one(svc)
        async with pushing(svc) as worker:
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered == 1), WAIT)
    [push] = receiver.received
    assert push.method == "POST"
    assert push.headers["content-type"] == "application/secevent+jwt"
    assert push.headers["accept"] == "application/json"
    assert push.headers["authorization"] == f"Bearer {SECRET}"
    jwks = (await svc.client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(push.token)
    assert (header["typ"], header["alg"]) == ("secevent+jwt", "EdDSA")
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(
        push.token, key.key, algorithms=["EdDSA"], audience=receiver.url,
        issuer=svc.tenant.issuer, options={"require": ["iss", "aud", "iat", "jti"]},
    )  # fmt: skip
    sid = created["subscription_id"]
    occurred = await svc.resources.pool.fetchval(
        "SELECT occurred_at FROM events WHERE position = $1", position
    )
    token_hash = await svc.resources.pool.fetchval(
        "SELECT token_hash FROM credentials WHERE credential_id = $1", credential_id
    )
    assert claims["jti"] == set_jti(sid, uuid.UUID(event_id))
    assert claims["txn"] == event_id
    assert claims["iat"] == int(svc.clock.now().timestamp())
    assert claims["sub_id"] == {"format": "opaque", "id": credential_id}
    assert claims["events"] == {
        CREDENTIAL_CHANGE: {
            "credential_type": "api_key",
            "change_type": "revoke",
            "event_timestamp": int(occurred.timestamp()),
            "initiating_entity": "admin",
            "reason_admin": {"en": "credential revoked (operator)"},
            "token_hash_prefix": token_hash[:16],
        }
    }
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(push.token, key.key, algorithms=["EdDSA"], audience="https://other.example")
    pool = svc.resources.pool
    for table in ("events", "subscriptions", "push_leases"):
        found = await pool.fetchval(
            f"SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'", SECRET
        )
        assert found == 0, f"the secret is in {table} in plain text"
    assert SECRET not in (await svc.client.get(PATH, headers=ADMIN)).text
    [shown] = await listed(svc)
    assert (shown["cursor"], shown["delivered"], shown["last_status"]) == (position, 1, 202)


async def test_a_receiver_down_for_good_is_dead_lettered_visibly_and_replayable(
    svc: Service,
) -> None:
    """Connections refused through the whole retry budget: the subscription is dead-lettered
    at the first revocation (the second waits behind it), the admin API shows it, and a
    replay after the receiver comes back delivers both, in order."""
    receiver = await SetReceiver().start()
    try:
        await receiver.go_down()
        created = await subscribe(svc, url=receiver.url)
        sid = created["subscription_id"]
        _, first, first_id = await revoke_one(svc)
        _, second, second_id = await revoke_one(svc)
        async with pushing(svc) as worker:
            for failures in (1, 2):
                await asyncio.wait_for(worker.wait_for(failed_at_least(failures)), WAIT)
                svc.clock.advance(PAST_ANY_WAIT)
            await asyncio.wait_for(worker.wait_for(lambda s: s.dead_lettered == 1), WAIT)
            [shown] = await listed(svc)
            assert shown["status"] == "dead_letter"
            assert shown["dead_letter"]["position"] == first
            assert shown["dead_letter"]["attempts"] == 3
            assert shown["dead_letter"]["cause"] == "exhausted"
            assert shown["dead_letter"]["error"] == "connection failed"
            assert shown["dead_letter"]["at"] is not None
            assert shown["cursor"] < first
            assert shown["next_position"] == first
            assert (shown["retrying"], shown["failed_attempts"], shown["delivered"]) == (None, 3, 0)
            await receiver.come_back()
            svc.clock.advance(timedelta(days=3))
            fresh = PushWorker(svc.resources.pool, secret_key=SECRET_KEY, tenant=svc.tenant,
                               clock=svc.clock, config=CONFIG,
                               outbound_allow=LOOPBACK_ALLOWED)  # fmt: skip
            try:
                assert await fresh.run_once() == 0  # a dead letter waits for the operator
            finally:
                await fresh.close()
            assert receiver.received == []
            resumed = await svc.client.post(f"{PATH}/{sid}/replay", headers=ADMIN)
            assert resumed.status_code == 200, resumed.text
            assert (resumed.json()["status"], resumed.json()["dead_letter"]) == ("active", None)
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered == 2), WAIT)
            assert [r.txn for r in receiver.received] == [first_id, second_id]
            again = await svc.client.post(
                f"{PATH}/{sid}/replay", json={"from_position": first - 1}, headers=ADMIN
            )
            assert again.status_code == 200
            assert again.json()["cursor"] == first - 1
            await asyncio.wait_for(worker.wait_for(lambda s: s.delivered == 4), WAIT)
    finally:
        await receiver.stop()
    assert [r.txn for r in receiver.received] == [first_id, second_id, first_id, second_id]
    assert receiver.received[0].claims()["jti"] == receiver.received[2].claims()["jti"]
    [shown] = await listed(svc)
    assert (shown["status"], shown["cursor"], shown["delivered"]) == ("active", second, 4)
    assert await svc.count("push.replay_requested") == 2
    assert await svc.count("push.dead_lettered") == 1
    assert await svc.count("push.delivery_failed") == 3


async def test_subscriptions_can_be_changed_listed_and_removed(svc: Service) -> None:
    """PATCH changes only what it names, the same terms again change nothing, DELETE removes
    (the subscription leaves the list but stays readable), and a removed one takes nothing."""
    created = await subscribe(
        svc, url="https://rs.example/events", secret=SECRET, reasons=["operator"]
    )
    sid = created["subscription_id"]
    assert created["audience"] == "https://rs.example/events"
    assert created["event_types"] == ["credential.revoked", "credential.expired"]
    changed = await svc.client.patch(
        f"{PATH}/{sid}", json={"secret": None, "event_types": ["credential.revoked"]}, headers=ADMIN
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["has_secret"], body["event_types"], body["reasons"]) == (
        False,
        ["credential.revoked"],
        ["operator"],
    )
    same = await svc.client.patch(f"{PATH}/{sid}", json={"reasons": ["operator"]}, headers=ADMIN)
    assert same.json()["version"] == body["version"]
    assert [s["subscription_id"] for s in await listed(svc)] == [sid]
    gone = await svc.client.delete(f"{PATH}/{sid}", params={"reason": "offboarded"}, headers=ADMIN)
    assert gone.status_code == 200
    assert gone.json()["status"] == "removed"
    assert await listed(svc) == []
    shown = await svc.client.get(f"{PATH}/{sid}", headers=ADMIN)
    assert shown.json()["status"] == "removed"
    head = await svc.head()
    for method, path, body_ in (
        ("DELETE", f"{PATH}/{sid}", None),
        ("POST", f"{PATH}/{sid}/replay", {}),
        ("PATCH", f"{PATH}/{sid}", {"url": "https://rs.example/v2"}),
    ):
        refused = await svc.client.request(method, path, json=body_, headers=ADMIN)
        assert refused.status_code == 404, (method, refused.text)
        assert refused.json()["error"] == "not_found"
    assert await svc.head() == head
    assert await svc.count("subscription.updated") == 1
    assert await svc.count("subscription.removed") == 1


GOOD_URL = "https://rs.example/events"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": 5},
        {"url": "http://rs.example/events"},
        {"url": "https://rs.example/events?token=abc"},
        {"url": "https://user:pw@rs.example/events"},
        {"url": "https://rs.example/events#frag"},
        {"url": "ftp://rs.example/events"},
        {"url": GOOD_URL, "event_types": ["credential.issued"]},
        {"url": GOOD_URL, "event_types": []},
        {"url": GOOD_URL, "event_types": ["credential.revoked", "credential.revoked"]},
        {"url": GOOD_URL, "secret": "short"},
        {"url": GOOD_URL, "secret": "has spaces in it, far too many"},
        {"url": GOOD_URL, "reasons": ["Not A Code"]},
        {"url": GOOD_URL, "from_position": -1},
        {"url": GOOD_URL, "from_position": 10**9},
        {"url": GOOD_URL, "surprise": True},
    ],
)
async def test_bad_subscriptions_are_refused_and_write_nothing(
    svc: Service, body: dict[str, Any]
) -> None:
    """Each bad body is a 400 `invalid_request` and no event."""
    head = await svc.head()
    response = await svc.client.post(PATH, json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert await svc.head() == head


async def test_bad_replays_and_unknown_subscriptions_are_refused(svc: Service) -> None:
    """A replay past the log's head or of an unknown subscription, a malformed body or id:
    4xx and nothing written."""
    sid = (await subscribe(svc, url=GOOD_URL))["subscription_id"]
    head = await svc.head()
    cases = [
        ("POST", f"{PATH}/{sid}/replay", {"from_position": head + 1}, 400),
        ("POST", f"{PATH}/{sid}/replay", {"from_position": "0"}, 400),
        ("POST", f"{PATH}/{sid}/replay", {"from": 0}, 400),
        ("POST", f"{PATH}/sub_unknownunknownunknow/replay", {}, 404),
        ("GET", f"{PATH}/sub_unknownunknownunknow", None, 404),
        ("GET", f"{PATH}/not-an-id", None, 404),
        ("PATCH", f"{PATH}/{sid}", {"url": "http://rs.example/x"}, 400),
        ("PATCH", f"{PATH}/{sid}", {"secret": 12}, 400),
    ]
    for method, path, body, status in cases:
        response = await svc.client.request(method, path, json=body, headers=ADMIN)
        assert response.status_code == status, (method, path, body, response.text)
        assert response.json()["error"] == ("not_found" if status == 404 else "invalid_request")
    assert await svc.head() == head


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-admin-token"}])
async def test_subscription_routes_need_the_admin_token(
    svc: Service, headers: dict[str, str]
) -> None:
    """Without the admin token every route is a 401 and nothing is written."""
    head = await svc.head()
    for method, path, body in (
        ("GET", PATH, None),
        ("POST", PATH, {"url": GOOD_URL}),
        ("GET", f"{PATH}/sub_x", None),
        ("PATCH", f"{PATH}/sub_x", {"url": GOOD_URL}),
        ("DELETE", f"{PATH}/sub_x", None),
        ("POST", f"{PATH}/sub_x/replay", {}),
    ):
        response = await svc.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"] == "unauthorized"
    assert await svc.head() == head
