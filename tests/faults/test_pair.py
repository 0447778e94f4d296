"""Two `authledger serve` processes and two `authledger worker` processes on one database,
driven over real HTTP the way the e2e suites drive the in-process app, each step alternating
between the two: discovery, the anonymous ceremony with real mail (the workers' mailer to an
SMTP sink), verified email, ID-JAG and logout (one jti store), the protected resource,
expiry by the workers, the revocation feed and the relay (each exactly once, two of each
worker running)."""

from __future__ import annotations

import uuid
from asyncio.subprocess import Process
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from service.tenancy.config import ID_JAG
from subscriber.wire import public_keys, verify
from tests.conftest import scratch_database
from tests.support.app_client import form_of, link_of, otp_of
from tests.support.backends import Backend
from tests.support.database_roles import OWNER_ROLE, as_owner, as_runtime
from tests.support.idp import IdentityProvider
from tests.support.nats import NatsNames
from tests.support.outages import (
    ANONYMOUS,
    assert_log_sound,
    eventually,
    serve_process,
    worker_process,
)
from tests.support.relay_support import checkpoint, jetstream, stored_messages
from tests.support.revocations import ADMIN_TOKEN, revocation_messages, serve_env
from tests.support.serve_process import Server
from tests.support.smtp_sink import Received, SmtpSink
from workers.feed import MSG_ID_HEADER, POSITION_HEADER

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
PUBLIC_URL = "https://auth.example.test"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LOGOUT = {"Content-Type": "application/logout+jwt"}
ACCESS_TOKEN_TTL = 30  # seconds: the shortest the settings allow, for the expiry worker
POST_CLAIM = ["api.read", "api.write"]


@dataclass
class Pair:
    a: Server
    b: Server
    sink: SmtpSink
    idp: IdentityProvider
    pool: asyncpg.Pool
    names: NatsNames
    nats_url: str
    database_url: str
    workers: tuple[Process, ...]

    async def events(self, event_type: str, stream_id: str | None = None) -> int:
        query = (
            "SELECT count(*) FROM events WHERE type = $1 AND stream_id = coalesce($2, stream_id)"
        )
        return int(await self.pool.fetchval(query, event_type, stream_id))

    async def mail_to(self, address: str) -> Received:
        """The claim mail the workers' mailer sent to `address` (waiting for it)."""

        async def arrived() -> Received | None:
            return next((m for m in self.sink.received if address in m.rcpt_tos), None)

        return await eventually(arrived, within=20, what=f"mail to {address}")


@pytest.fixture(scope="module")
async def pair(
    backend: Backend, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pair]:
    names = NatsNames.unique()
    logs = tmp_path_factory.mktemp("pair")
    async with (
        scratch_database(backend, template_database, OWNER_ROLE) as admin_url,
        SmtpSink() as sink,
        IdentityProvider() as idp,
    ):
        database_url = as_runtime(admin_url)  # serve and worker as the runtime role
        env = serve_env(
            database_url,
            backend.nats_url,
            names,
            AUTHLEDGER_PUBLIC_URL=PUBLIC_URL,
            AUTHLEDGER_SMTP_URL=sink.url,
            AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP="true",
            AUTHLEDGER_ACCESS_TOKEN_TTL=str(ACCESS_TOKEN_TTL),
        )
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            async with (
                serve_process(env) as a,
                serve_process(env) as b,
                worker_process(env, logs / "worker-1.log") as w1,
                worker_process(env, logs / "worker-2.log") as w2,
            ):
                trusted = await a.http.post(
                    "/admin/trusted-issuers",
                    json={"issuer": idp.issuer, "jwks_uri": idp.jwks_url},
                    headers=ADMIN,
                )
                assert trusted.status_code in (200, 201), trusted.text
                yield Pair(a, b, sink, idp, pool, names, backend.nats_url, database_url, (w1, w2))
        finally:
            await pool.close()
            async with jetstream(backend.nats_url, delete=names.stream):
                pass


def path_of(url: str) -> str:
    """The path and query of an absolute URL the service made (links carry PUBLIC_URL)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def code_from_mail(mail: Received, page_on: Server, button_on: Server) -> str:
    """The person: opens the mailed link (on one process), presses the button (on the other)
    and reads the code."""
    page = await page_on.http.get(path_of(link_of(mail)))
    assert page.status_code == 200, page.text
    action, field, value = form_of(page.text)
    shown = await button_on.http.post(path_of(action), data={field: value})
    assert shown.status_code == 200, shown.text
    return otp_of(shown.text)


async def refused(server: Server, credential: str, message: str, within: float = 5.0) -> None:
    """`server` refuses `credential` at /api/me within `within` seconds, saying `message`."""

    async def probe() -> httpx.Response | None:
        answer = await server.http.get("/api/me", headers=bearer(credential))
        return answer if answer.status_code == 401 else None

    answer = await eventually(probe, within=within, what=f"{server.url} refusing the key")
    assert answer.json()["message"] == message
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def id_jag(pair: Pair, sub: str, **overrides: Any) -> str:
    return pair.idp.mint_id_jag(
        aud=PUBLIC_URL, now=datetime.now(UTC), sub=sub, overrides=overrides or None
    )


async def present(server: Server, assertion: str, kind: str) -> httpx.Response:
    body = {"type": "identity_assertion", "assertion_type": ID_JAG, "assertion": assertion,
            "requested_credential_type": kind}  # fmt: skip
    return await server.http.post("/agent/auth", json=body)


async def test_discovery_is_the_same_on_both(pair: Pair) -> None:
    """PRM (both URLs), AS metadata, auth.md and the JWKS: the same documents from both
    processes, naming the public URL, with the signing key both share."""
    prm = "/.well-known/oauth-protected-resource"
    paths = [prm, f"{prm}/api/", "/.well-known/oauth-authorization-server", "/auth.md",
             "/.well-known/jwks.json"]  # fmt: skip
    for path in paths:
        first, second = await pair.a.http.get(path), await pair.b.http.get(path)
        assert (first.status_code, second.status_code) == (200, 200), path
        assert first.content == second.content, path
    metadata = (await pair.b.http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == PUBLIC_URL
    assert PUBLIC_URL in (await pair.a.http.get("/auth.md")).text
    assert len((await pair.a.http.get("/.well-known/jwks.json")).json()["keys"]) >= 1


async def test_anonymous_claim_alternating_between_the_pair(pair: Pair) -> None:
    """Register on A, claim on B, the mail from a worker, the page on A and its button on B,
    complete on A, the re-scoped key on B; revoked through A's admin API, B refuses it."""
    email = f"anon-{uuid.uuid4().hex[:8]}@example.net"
    registered = ok(await pair.a.http.post("/agent/auth", json=ANONYMOUS))
    key, claim_token = registered["credential"], registered["claim_token"]
    assert ok(await pair.b.http.get("/api/me", headers=bearer(key)))["claim_state"] == "unclaimed"
    started = ok(await pair.b.http.post(
        "/agent/auth/claim", json={"claim_token": claim_token, "email": email}
    ))  # fmt: skip
    assert (started["registration_id"], started["status"]) == (
        registered["registration_id"], "initiated")  # fmt: skip
    mail = await pair.mail_to(email)
    assert mail.message_id == f"<{started['claim_attempt_id']}@authledger>"
    otp = await code_from_mail(mail, pair.a, pair.b)
    done = ok(await pair.a.http.post(
        "/agent/auth/claim/complete", json={"claim_token": claim_token, "otp": otp}
    ))  # fmt: skip
    assert done == {"registration_id": registered["registration_id"], "status": "claimed"}

    async def claimed_on_b() -> dict[str, Any] | None:
        me = ok(await pair.b.http.get("/api/me", headers=bearer(key)))
        return me if me["claim_state"] == "claimed" else None

    me = await eventually(claimed_on_b, within=5, what="B seeing the claim")
    assert me["scopes"] == POST_CLAIM
    assert me["user_id"].startswith("usr_")
    again = await pair.b.http.post(
        "/agent/auth/claim/complete", json={"claim_token": claim_token, "otp": otp}
    )
    assert (again.status_code, again.json()["error"]) == (409, "previously_claimed")
    revoked = ok(await pair.a.http.post(
        "/admin/revocations", json={"credential_id": me["credential_id"]}, headers=ADMIN
    ))  # fmt: skip
    assert revoked["revoked"] == 1
    await refused(pair.b, key, "the credential has been revoked")
    await refused(pair.a, key, "the credential has been revoked", within=0.5)


async def test_verified_email_alternating_between_the_pair(pair: Pair) -> None:
    """verified_email on B, the page on B and its button on A, complete on B: the access
    token works on A; a second complete on A gets 409 and no credential."""
    email = f"ve-{uuid.uuid4().hex[:8]}@example.net"
    registered = ok(await pair.b.http.post("/agent/auth", json={
        "type": "identity_assertion", "assertion_type": "verified_email", "assertion": email,
        "requested_credential_type": "access_token"}))  # fmt: skip
    assert registered["registration_type"] == "email-verification"
    otp = await code_from_mail(await pair.mail_to(email), pair.b, pair.a)
    body = {"claim_token": registered["claim_token"], "otp": otp}
    done = ok(await pair.b.http.post("/agent/auth/claim/complete", json=body))
    assert (done["credential_type"], done["scopes"]) == ("access_token", POST_CLAIM)
    me = ok(await pair.a.http.get("/api/me", headers=bearer(done["credential"])))
    assert (me["credential_type"], me["scopes"]) == ("access_token", POST_CLAIM)
    again = await pair.a.http.post("/agent/auth/claim/complete", json=body)
    assert (again.status_code, again.json()["error"]) == (409, "previously_claimed")
    assert "credential" not in again.json()


async def test_id_jag_and_logout_across_the_pair(pair: Pair) -> None:
    """ID-JAG on A; the same assertion on B is a replay (one jti store); a second ID-JAG on
    B is the same user; a logout token posted to B revokes both keys, refused on A; the same
    logout token again on A is a replay."""
    sub = f"ana-{uuid.uuid4().hex[:8]}"
    assertion = id_jag(pair, sub)
    first = ok(await present(pair.a, assertion, "api_key"))
    assert first["registration_type"] == "agent-provider"
    replay = await present(pair.b, assertion, "api_key")
    assert (replay.status_code, replay.json()["error"]) == (400, "replay_detected")
    second = ok(await present(pair.b, id_jag(pair, sub), "access_token"))
    assert second["registration_id"] == first["registration_id"]
    users = {ok(await server.http.get("/api/me", headers=bearer(c["credential"])))["user_id"]
             for server in (pair.a, pair.b) for c in (first, second)}  # fmt: skip
    assert len(users) == 1
    other = ok(await present(pair.a, id_jag(pair, f"bob-{sub}"), "api_key"))
    logout = pair.idp.mint_logout_token(aud=PUBLIC_URL, now=datetime.now(UTC), sub=sub)
    answer = await pair.b.http.post("/agent/auth/revoke", content=logout, headers=LOGOUT)
    assert ok(answer) == {"revoked": 2}
    for credential in (first["credential"], second["credential"]):
        await refused(pair.a, credential, "the credential has been revoked")
    assert (
        await pair.a.http.get("/api/me", headers=bearer(other["credential"]))
    ).status_code == 200
    again = await pair.a.http.post("/agent/auth/revoke", content=logout, headers=LOGOUT)
    assert (again.status_code, again.json()["error"]) == (400, "replay_detected")


async def test_protected_resource_on_both(pair: Pair) -> None:
    """/api/me challenges without a credential on both; a key registered on B is active at
    A's introspection, and inactive there once revoked through B."""
    for server in (pair.a, pair.b):
        bare = await server.http.get("/api/me")
        assert bare.status_code == 401
        assert bare.headers["www-authenticate"] == (
            f'Bearer resource_metadata="{PUBLIC_URL}/.well-known/oauth-protected-resource/api/"'
        )
    registered = ok(await pair.b.http.post("/agent/auth", json=ANONYMOUS))
    key = registered["credential"]
    looked_up = ok(await pair.a.http.post("/oauth2/introspect", data={"token": key}, headers=ADMIN))
    assert (looked_up["active"], looked_up["sub"]) == (True, registered["registration_id"])
    revoked = ok(await pair.b.http.post(
        "/admin/revocations", json={"registration_id": registered["registration_id"]},
        headers=ADMIN))  # fmt: skip
    assert revoked["revoked"] == 1

    async def inactive_on_a() -> bool:
        answer = await pair.a.http.post("/oauth2/introspect", data={"token": key}, headers=ADMIN)
        return bool(ok(answer) == {"active": False})

    await eventually(inactive_on_a, within=5, what="A's introspection seeing the revocation")


async def test_expiry_by_the_workers(pair: Pair) -> None:
    """An access token issued on A (30 s life) works on B, then one of the two workers records
    its `credential.expired`, once, and both processes refuse it as expired."""
    issued = ok(await present(pair.a, id_jag(pair, f"exp-{uuid.uuid4().hex[:8]}"), "access_token"))
    me = ok(await pair.b.http.get("/api/me", headers=bearer(issued["credential"])))
    credential_id = me["credential_id"]

    async def expired() -> bool:
        return await pair.events("credential.expired", credential_id) > 0

    await eventually(expired, within=ACCESS_TOKEN_TTL + 30, what="credential.expired", every=0.2)
    for server in (pair.b, pair.a):
        await refused(server, issued["credential"], "the credential has expired", within=1)
    assert await pair.events("credential.expired", credential_id) == 1


async def test_revocation_feed_and_relay_exactly_once(pair: Pair) -> None:
    """After a revocation through A: B's /admin/revocations lists every ended credential of the
    log; the feed on NATS holds each once, signed with the JWKS key; the relay has put every
    event of the log on the stream once. Both workers still run, and the log and the read
    models the four processes wrote are sound."""
    registered = ok(await pair.a.http.post("/agent/auth", json=ANONYMOUS))
    ok(await pair.a.http.post("/admin/revocations",
                              json={"registration_id": registered["registration_id"]},
                              headers=ADMIN))  # fmt: skip
    ended = {row["stream_id"] for row in await pair.pool.fetch(
        "SELECT stream_id FROM events WHERE type IN ('credential.revoked', 'credential.expired')"
    )}  # fmt: skip
    listed = ok(await pair.b.http.get("/admin/revocations", headers=ADMIN))
    assert {e["credential_id"] for e in listed["revocations"]} == ended
    head = int(await pair.pool.fetchval("SELECT max(position) FROM events"))
    relay = f"relay:{pair.names.stream}"

    async def caught_up() -> bool:
        return await checkpoint(pair.pool, relay) >= head

    await eventually(caught_up, within=30, what="the relay reaching the head")
    keys = public_keys(ok(await pair.a.http.get("/.well-known/jwks.json")))
    async with jetstream(pair.nats_url) as js:

        async def fed() -> list[Any] | None:
            found = await revocation_messages(js, pair.names)
            return found if len(found) >= len(ended) else None

        messages = await eventually(fed, within=30, what="the revocation feed", every=0.2)
        stored = await stored_messages(js, pair.names.stream)
    fed_ids = Counter(verify(m.data, keys).credential_id for m in messages)
    assert fed_ids == Counter(ended)
    relayed = Counter(m.headers[MSG_ID_HEADER] for m in stored if POSITION_HEADER in m.headers)
    logged = await pair.pool.fetch("SELECT event_id FROM events WHERE position <= $1", head)
    assert {str(row["event_id"]) for row in logged} <= set(relayed)
    assert max(relayed.values()) == 1, "an event is on the stream twice"
    assert [w.returncode for w in pair.workers] == [None, None]
    await assert_log_sound(
        as_owner(pair.database_url)
    )  # gap-free, chained, read models = a rebuild
