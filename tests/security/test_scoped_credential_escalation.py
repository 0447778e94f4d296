"""Attack (issue 12, finding 2): one admin token ruled everything, in every tenant, and was
handed to every resource server and to Prometheus, so whoever read a resource server's or
Prometheus's configuration could change the trust list, erase people or revoke in bulk, in
any tenant (the tenant was whatever `Host` said).

Now each holder gets a scoped credential (`operator`, `tenant_admin`, `introspection`,
`metrics`, `revocation_feed`), granted and revoked as events, stored as a SHA-256 only, and
each route accepts only its scope: a resource server's introspection credential cannot touch
the trust list, Prometheus's cannot revoke, and a tenant's admin cannot act on another
tenant's hosts. A revoked credential is refused at once, in this process and in the others.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.commands.context import Caller
from service.commands.tenants import create_tenant
from service.crypto.tokens import token_hash
from service.providers.trust import TrustedIssuer
from tests.support.app_client import ADMIN_TOKEN, Service, running_service
from tests.support.backends import Backend
from tests.support.id_jag import jag, me, registered, trust
from tests.support.idp import IdentityProvider
from tests.support.serve_process import AUTHLEDGER, SECRETS, authledger_env, serving
from tests.support.waiting import wait_until

ISSUERS = "/admin/trusted-issuers"
REVOCATIONS = "/admin/revocations"
CREDENTIALS = "/admin/credentials"
INTROSPECT = "/oauth2/introspect"
BOOTSTRAP = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ACME_URL = "https://auth.acme.example"
ACME = {"public_url": ACME_URL}
NEW_ISSUER = {"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    """The service with a second tenant, `acme`, on its own host (as tests/e2e/test_tenants)."""
    async with running_service(backend, database_url) as s:
        ctx = await s.resources.command_context()
        await create_tenant(ctx, s.resources.settings, "acme", hosts=["auth.acme.example"],
                            settings=ACME, caller=Caller(actor="test"))  # fmt: skip
        yield s


@pytest.fixture
async def acme(svc: Service) -> AsyncIterator[httpx.AsyncClient]:
    transport = svc.client._transport  # the same app, reached by the tenant's own host name
    async with httpx.AsyncClient(transport=transport, base_url=ACME_URL) as client:
        yield client


async def grant(client: httpx.AsyncClient, scope: str, **fields: str) -> dict[str, Any]:
    body = {"scope": scope, "label": f"test {scope}", **fields}
    response = await client.post(CREDENTIALS, json=body, headers=BOOTSTRAP)
    assert response.status_code == 201, response.text
    granted: dict[str, Any] = response.json()
    return granted


def refused(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


async def test_an_introspection_credential_cannot_add_a_trusted_issuer(svc: Service) -> None:
    """A resource server's credential introspects (Bearer, and Basic client_id:secret as RFC
    7662 §2.1 has it) but is refused with 403 on the trust list, erasure, revocation, the
    feed, the metrics and the credentials API, writing nothing."""
    rs = await grant(svc.client, "introspection", client_id="orders-api")
    agent = await svc.anonymous()
    for headers in (bearer(rs["token"]), basic("orders-api", rs["token"])):
        answer = await svc.client.post(INTROSPECT, data={"token": agent["credential"]},
                                       headers=headers)  # fmt: skip
        assert (answer.status_code, answer.json()["active"]) == (200, True)
    wrong_client = await svc.client.post(INTROSPECT, data={"token": agent["credential"]},
                                         headers=basic("billing-api", rs["token"]))  # fmt: skip
    assert refused(wrong_client) == (401, "unauthorized")
    assert wrong_client.headers["www-authenticate"].startswith("Basic")
    head = await svc.head()
    for method, path, body in (
        ("POST", ISSUERS, NEW_ISSUER),
        ("GET", ISSUERS, None),
        ("POST", "/admin/erasures", {"user_id": "usr_x"}),
        ("POST", REVOCATIONS, {"registration_id": agent["registration_id"]}),
        ("GET", REVOCATIONS, None),
        ("GET", "/metrics", None),
        ("POST", CREDENTIALS, {"scope": "operator", "label": "me, an operator now"}),
    ):
        answer = await svc.client.request(method, path, json=body, headers=bearer(rs["token"]))
        assert refused(answer) == (403, "insufficient_scope"), (method, path)
    assert await svc.head() == head
    assert (await svc.client.get(ISSUERS, headers=BOOTSTRAP)).json()["trusted_issuers"] == []


async def test_a_tenant_a_admin_cannot_act_on_tenant_b(
    svc: Service, acme: httpx.AsyncClient
) -> None:
    """acme's admin manages acme's trust list on acme's host; on the default tenant's host
    every admin route answers 403 `wrong_tenant` and writes nothing; and it cannot grant
    itself (or anyone) a credential."""
    admin = await grant(acme, "tenant_admin")  # on acme's host: bound to acme
    assert admin["tenant_id"] == "acme"
    mine = await acme.post(ISSUERS, json=NEW_ISSUER, headers=bearer(admin["token"]))
    assert mine.status_code == 201, mine.text
    theirs = await svc.anonymous()
    head = await svc.head()
    for method, path, body in (
        ("POST", ISSUERS, NEW_ISSUER),
        ("GET", ISSUERS, None),
        ("POST", REVOCATIONS, {"registration_id": theirs["registration_id"]}),
        ("GET", REVOCATIONS, None),
        ("POST", "/admin/erasures", {"user_id": "usr_x"}),
        ("GET", "/admin/subscriptions", None),
        ("GET", f"/admin/audit/registration/{theirs['registration_id']}/timeline", None),
    ):
        answer = await svc.client.request(method, path, json=body, headers=bearer(admin["token"]))
        assert refused(answer) == (403, "wrong_tenant"), (method, path)
    assert await svc.head() == head
    me = await svc.client.get("/api/me", headers=bearer(theirs["credential"]))
    assert me.status_code == 200  # not revoked
    for client in (acme, svc.client):
        escalate = await client.post(CREDENTIALS, json={"scope": "operator", "label": "x"},
                                     headers=bearer(admin["token"]))  # fmt: skip
        assert refused(escalate) == (403, "insufficient_scope")
    verify = await acme.get("/admin/audit/verify", headers=bearer(admin["token"]))
    assert refused(verify) == (403, "insufficient_scope")  # the whole chain is the operator's
    assert await svc.head() == head


async def test_a_metrics_credential_cannot_revoke(svc: Service) -> None:
    """Prometheus's credential reads /metrics and nothing else: revoking with it is 403 and
    the agent's key stays live."""
    prometheus = await grant(svc.client, "metrics")
    assert prometheus["tenant_id"] is None  # the metrics are the installation's
    scrape = await svc.client.get("/metrics", headers=bearer(prometheus["token"]))
    assert scrape.status_code == 200
    agent = await svc.anonymous()
    head = await svc.head()
    attempt = await svc.client.post(REVOCATIONS, json={"registration_id": agent["registration_id"]},
                                    headers=bearer(prometheus["token"]))  # fmt: skip
    assert refused(attempt) == (403, "insufficient_scope")
    feed = await svc.client.get(REVOCATIONS, headers=bearer(prometheus["token"]))
    assert refused(feed) == (403, "insufficient_scope")
    peek = await svc.client.post(INTROSPECT, data={"token": agent["credential"]},
                                 headers=bearer(prometheus["token"]))  # fmt: skip
    assert refused(peek) == (403, "insufficient_scope")
    assert await svc.head() == head
    assert (await svc.client.get("/api/me", headers=bearer(agent["credential"]))).status_code == 200


async def test_a_feed_credential_reads_only_its_tenants_feed(
    svc: Service, acme: httpx.AsyncClient
) -> None:
    """A subscriber's revocation_feed credential resynchronises from its tenant's feed only."""
    subscriber = await grant(svc.client, "revocation_feed")
    assert subscriber["tenant_id"] == "default"
    assert (
        await svc.client.get(REVOCATIONS, headers=bearer(subscriber["token"]))
    ).status_code == 200
    other = await acme.get(REVOCATIONS, headers=bearer(subscriber["token"]))
    assert refused(other) == (403, "wrong_tenant")
    revoke = await svc.client.post(REVOCATIONS, json={"user_id": "usr_x"},
                                   headers=bearer(subscriber["token"]))  # fmt: skip
    assert refused(revoke) == (403, "insufficient_scope")


async def test_a_revoked_credential_is_refused(svc: Service, database_url: str) -> None:
    """Revoked through the API: 401 with `WWW-Authenticate` on the next call. Revoked by the
    CLI in another process: refused here as soon as the log feed brings the event (a
    credential cached by a recent check is not served past it)."""
    operator = await grant(svc.client, "operator")
    assert (await svc.client.get(ISSUERS, headers=bearer(operator["token"]))).status_code == 200
    gone = await svc.client.delete(f"{CREDENTIALS}/{operator['credential_id']}",
                                   params={"reason": "laptop lost"}, headers=BOOTSTRAP)  # fmt: skip
    assert gone.json() == {"credential_id": operator["credential_id"], "outcome": "revoked"}
    answer = await svc.client.get(ISSUERS, headers=bearer(operator["token"]))
    assert refused(answer) == (401, "unauthorized")
    assert answer.headers["www-authenticate"] == "Bearer"

    second = await grant(svc.client, "operator")
    for _ in range(3):  # cached now
        assert (await svc.client.get(ISSUERS, headers=bearer(second["token"]))).status_code == 200
    env = authledger_env(AUTHLEDGER_DATABASE_URL=database_url)
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, "access", "revoke", second["credential_id"], "--reason", "rotated",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode, out.decode().strip()) == (0, f"revoked {second['credential_id']}"), err

    async def refused_here() -> bool:
        answer = await svc.client.get(ISSUERS, headers=bearer(second["token"]))
        return answer.status_code == 401

    await wait_until(refused_here, within=5.0, what="the revoked credential refused")
    listed = await svc.client.get(CREDENTIALS, params={"revoked": "true"}, headers=BOOTSTRAP)
    revoked = {c["credential_id"]: c for c in listed.json()["credentials"]}
    assert revoked[second["credential_id"]]["revoke_reason"] == "rotated"
    assert revoked[second["credential_id"]]["revoked_at"] is not None


async def test_the_token_is_not_stored_in_plain_text(svc: Service, database_url: str) -> None:
    """Neither the log (payload, metadata) nor the read model holds a granted token: only its
    SHA-256; and each grant and revocation names its actor and request id."""
    by_api = await grant(svc.client, "introspection", client_id="orders-api")
    env = authledger_env(AUTHLEDGER_DATABASE_URL=database_url)
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, "access", "grant", "--scope", "metrics", "--label", "prometheus",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    by_cli = json.loads(out)
    assert by_cli["token"].startswith("ala_")
    assert len(by_cli["token"]) == 47  # the prefix and 256 bits
    operator = await grant(svc.client, "operator")
    revoked = await svc.client.delete(f"{CREDENTIALS}/{by_api['credential_id']}",
                                      headers={**bearer(operator["token"]),
                                               "X-Request-ID": "req-revoke-1"})  # fmt: skip
    assert revoked.status_code == 200
    pool = svc.resources.pool
    log = await pool.fetch(
        "SELECT stream_id, type, payload::text AS payload, metadata::text AS metadata "
        "FROM events WHERE stream_type = 'access' ORDER BY position"
    )
    table = [
        " ".join(str(v) for v in row.values())
        for row in await pool.fetch("SELECT * FROM access_credentials")
    ]
    for token in (by_api["token"], by_cli["token"], operator["token"]):
        assert not any(token in r["payload"] or token in r["metadata"] for r in log)
        assert not any(token in row for row in table)
        assert any(token_hash(token) in r["payload"] for r in log)
    actors = {(r["stream_id"], r["type"]): json.loads(r["metadata"]) for r in log}
    assert actors[(by_api["credential_id"], "access.granted")]["actor"] == "admin:bootstrap"
    assert actors[(by_cli["credential_id"], "access.granted")]["actor"].startswith("cli:")
    revocation = actors[(by_api["credential_id"], "access.revoked")]
    assert revocation == {
        "correlation_id": "req-revoke-1",
        "actor": f"admin:{operator['credential_id']}",
    }
    listed = (await svc.client.get(CREDENTIALS, headers=BOOTSTRAP)).text
    assert "ala_" not in listed
    assert token_hash(operator["token"]) not in listed


async def test_a_trusted_provider_does_not_take_over_users_by_email_unless_opted_in(
    backend: Backend, database_url: str
) -> None:
    """A provider on the trust list asserting an existing user's email gets a user of its own:
    `link_by_verified_email` is off unless the operator turns it on (admin API, CLI and the
    domain default alike); turned on, the same assertion finds the existing user."""
    async with (
        IdentityProvider() as idp,
        running_service(backend, database_url, JWKS_ALLOW_LOOPBACK_HTTP="true") as svc,
    ):
        await trust(svc, idp)
        listed = (await svc.client.get(ISSUERS, headers=BOOTSTRAP)).json()["trusted_issuers"]
        assert [entry["link_by_verified_email"] for entry in listed] == [False]
        victim = await registered(svc, jag(svc, idp, sub="s1", overrides={"email": "ana@x.net"}))
        victim_user = (await me(svc, victim["credential"])).json()["user_id"]
        other = await registered(svc, jag(svc, idp, sub="s2", overrides={"email": "ana@x.net"}))
        assert (await me(svc, other["credential"])).json()["user_id"] != victim_user
        await trust(svc, idp, link_by_verified_email=True)
        linked = await registered(svc, jag(svc, idp, sub="s3", overrides={"email": "ana@x.net"}))
        assert (await me(svc, linked["credential"])).json()["user_id"] == victim_user
    assert TrustedIssuer(issuer="https://idp.example").link_by_verified_email is False


async def test_the_bootstrap_token_still_works_but_serve_and_worker_warn(
    backend: Backend, database_url: str
) -> None:
    """AUTHLEDGER_ADMIN_TOKEN stays an operator credential (the suite, `dev` and the subscriber
    use it) but `serve` and `worker` each say once that it is deprecated; without it `serve`
    starts silently and a granted operator credential does the job."""
    services = {"AUTHLEDGER_DATABASE_URL": database_url, "AUTHLEDGER_NATS_URL": backend.nats_url}
    warning = "settings.admin_token_deprecated"
    with_token = authledger_env(**services, **SECRETS)
    async with serving([], with_token) as server:
        answer = await server.http.get(ISSUERS, headers=bearer(SECRETS["AUTHLEDGER_ADMIN_TOKEN"]))
        assert answer.status_code == 200
        status, err = await server.stop()
    assert status == 0, err
    assert err.count(warning) == 1, err
    worker = await asyncio.create_subprocess_exec(
        AUTHLEDGER, "worker", env=with_token, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert worker.stderr is not None
        async with asyncio.timeout(20):
            while warning not in (line := (await worker.stderr.readline()).decode()):
                assert line, "the worker stopped without the warning"
    finally:
        worker.terminate()
        await worker.wait()
    env = authledger_env(**services, AUTHLEDGER_SECRET_KEY=SECRETS["AUTHLEDGER_SECRET_KEY"])
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, "access", "grant", "--scope", "operator", "--label", "ops", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    token = json.loads(out)["token"]
    async with serving([], env) as server:
        assert (await server.http.get(ISSUERS, headers=bearer(token))).status_code == 200
        bootstrap = await server.http.get(
            ISSUERS, headers=bearer(SECRETS["AUTHLEDGER_ADMIN_TOKEN"])
        )
        assert bootstrap.status_code == 401  # unset: no longer a credential
        status, err = await server.stop()
    assert status == 0, err
    assert warning not in err
