"""Attack (issue 12, finding 5): mail bombing through verified-email registration, and one
flow's flood spending the other's tenant budget.

Before the fix E4 `verified_email` was limited per client address (60/h) and per tenant
(1000/h) only: from many addresses anyone could have the service send a victim a claim mail
per registration, up to the whole tenant budget each hour. And that tenant budget was one
bucket for verified_email and ID-JAG alike, so a flood of either flow refused the other.
Now every claim mail counts against its recipient (`mail_per_recipient`, 5/h, keyed by an HMAC
of the normalised address), at E4 verified_email and at E5 alike, and each flow has its own
tenant budget (`verified_email_per_tenant`, `id_jag_per_tenant`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from service.ratelimit.limits import SPEC_LIMITS
from service.tenancy.config import ID_JAG
from tests.support.app_client import Service, client_at, running_service
from tests.support.backends import Backend
from tests.support.id_jag import jag, trust
from tests.support.idp import IdentityProvider
from tests.support.waiting import wait_until

VICTIM = "vera.victim@example.net"
BYSTANDER = "bob.bystander@example.net"
PER_RECIPIENT = SPEC_LIMITS["mail_per_recipient"]
ATTACKS = 12  # registrations aimed at the victim, each from an address of its own


def verified_email(address: str) -> dict[str, str]:
    return {"type": "identity_assertion", "assertion_type": "verified_email",
            "assertion": address, "requested_credential_type": "access_token"}  # fmt: skip


def attacker_ip(n: int) -> str:
    return f"198.51.100.{n + 1}"


def assert_rate_limited(response: httpx.Response) -> int:
    """The spec's refusal: 429 `rate_limited` with a whole-seconds Retry-After."""
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "rate_limited"
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= 2 * PER_RECIPIENT.period
    return wait


async def _register(
    svc: Service, backend: Backend, database_url: str, ip: str, body: dict[str, str]
) -> httpx.Response:
    async with client_at(svc, backend, database_url, ip) as client:
        return await client.post("/agent/auth", json=body)


async def _mails_settle(svc: Service, expected: int) -> list[str]:
    """Wait for `expected` mails, then until the outbox has nothing left to send: the mailer
    sends pending rows only, and marks one sent after the SMTP server took it, so every mail
    the registrations queued has arrived. The recipients of all that arrived."""
    await svc.sink.wait_for(expected)
    pool = svc.resources.pool

    async def nothing_pending() -> bool:
        pending = await pool.fetchval("SELECT count(*) FROM mail_outbox WHERE status = 'pending'")
        return bool(pending == 0)

    await wait_until(nothing_pending, within=30, what="the outbox with nothing left to send")
    return [to for mail in svc.sink.received for to in mail.rcpt_tos]


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url, RATE_LIMITS="on") as running:
        yield running


async def test_registrations_from_many_addresses_stop_at_the_recipients_limit(
    svc: Service, backend: Backend, database_url: str
) -> None:
    """Twelve verified_email registrations for one victim, each from another client address
    (none near its own per-IP limit): five go through, the rest answer 429 with Retry-After
    and write nothing, and the SMTP server gets five mails; E5 to the same address (any
    letter case) is refused too, its budget being the same; another address is still served;
    the counters hold no address; after Retry-After the victim can register again."""
    answers, wait = [], 0
    for n in range(ATTACKS):
        head = await svc.head()
        answer = await _register(svc, backend, database_url, attacker_ip(n), verified_email(VICTIM))
        answers.append(answer.status_code)
        if answer.status_code != 200:
            wait = assert_rate_limited(answer)
            assert "e-mails to this address" in answer.json()["message"]
            assert await svc.head() == head  # the refusal wrote nothing
    allowed = PER_RECIPIENT.count
    assert answers == [200] * allowed + [429] * (ATTACKS - allowed)
    assert await svc.count("registration.created") == allowed

    anonymous = await _register(
        svc, backend, database_url, "203.0.113.50",
        {"type": "anonymous", "requested_credential_type": "api_key"},
    )  # fmt: skip
    assert anonymous.status_code == 200
    head = await svc.head()
    claimed = await svc.client.post(
        "/agent/auth/claim",
        json={"claim_token": anonymous.json()["claim_token"], "email": "Vera.Victim@EXAMPLE.net"},
    )
    assert_rate_limited(claimed)  # E5 draws on the same recipient budget
    assert await svc.head() == head

    assert await _mails_settle(svc, allowed) == [VICTIM] * allowed
    assert await svc.resources.pool.fetchval("SELECT count(*) FROM mail_outbox") == allowed
    served = await _register(svc, backend, database_url, attacker_ip(0), verified_email(BYSTANDER))
    assert served.status_code == 200, served.text
    assert (await _mails_settle(svc, allowed + 1))[-1] == BYSTANDER
    buckets = await svc.resources.pool.fetchval(
        "SELECT string_agg(bucket, ' ') FROM rate_limit_windows"
    )
    assert "mail_per_recipient:" in buckets
    for plain in ("vera", "victim", "example.net"):
        assert plain not in buckets.lower()

    svc.clock.advance(timedelta(seconds=wait))
    again = await _register(svc, backend, database_url, attacker_ip(1), verified_email(VICTIM))
    assert again.status_code == 200, again.text
    assert (await _mails_settle(svc, allowed + 2))[-1] == VICTIM


def _limits_file(tmp_path: Path) -> str:
    """The tenant budget under its older, shared name: since the fix, each flow's own."""
    path = tmp_path / "limits.toml"
    path.write_text('[default]\nidentity_per_tenant = "2/h"\n')
    return str(path)


@pytest.mark.parametrize("flooded", ["id_jag", "verified_email"])
async def test_one_flows_flood_leaves_the_other_flows_tenant_budget(
    backend: Backend, database_url: str, tmp_path: Path, flooded: str
) -> None:
    """With a tenant budget of 2/h, two registrations of one flow spend its budget (the third
    is refused, naming the tenant), and the other flow still registers twice: the buckets are
    the flows' own."""
    async with (
        IdentityProvider() as idp,
        running_service(
            backend, database_url, RATE_LIMITS=_limits_file(tmp_path),
            JWKS_ALLOW_LOOPBACK_HTTP="true",
        ) as svc,
    ):  # fmt: skip
        await trust(svc, idp)
        sent = 0

        def body(flow: str) -> dict[str, str]:
            nonlocal sent
            sent += 1
            if flow != "id_jag":
                return verified_email(f"person{sent}@example.net")
            return {
                "type": "identity_assertion",
                "assertion_type": ID_JAG,
                "assertion": jag(svc, idp),
                "requested_credential_type": "api_key",
            }

        other = "verified_email" if flooded == "id_jag" else "id_jag"
        for flow in (flooded, other):
            for _ in range(2):
                answer = await _register(svc, backend, database_url, attacker_ip(sent), body(flow))
                assert answer.status_code == 200, f"{flow}: {answer.text}"
            refused = await _register(svc, backend, database_url, attacker_ip(sent), body(flow))
            assert_rate_limited(refused)
            assert "at this service" in refused.json()["message"]
        assert len(await _mails_settle(svc, 2)) == 2  # the two verified_email registrations'
