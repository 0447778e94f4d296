"""The audit API as an operator uses it over HTTP: timelines, state as of an instant,
exports that an auditor checks with nothing but the file and the service's public JWKS, and
the chain's verification; all behind the admin token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from service.audit.check import check
from service.audit.publisher import Publisher
from service.audit.signing_round import sign_now
from service.crypto.signing import KeyRing
from service.crypto.tokens import token_hash
from tests.support.app_client import ADMIN_TOKEN, CLIENT_IP, SECRET_KEY, Service, running_service
from tests.support.audit import checkpoint_stream, pinned_keys
from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.relay_support import jetstream

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
AUDIT = "/admin/audit"


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as s:
        yield s


async def _key(svc: Service) -> tuple[str, str]:
    """An anonymous agent's key: (credential id, the key itself)."""
    body = await svc.anonymous()
    row = await svc.row("credentials", "token_hash", token_hash(body["credential"]))
    return str(row["credential_id"]), str(body["credential"])


async def _get(svc: Service, path: str, **params: Any) -> Any:
    response = await svc.client.get(path, params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def test_audit_routes_need_the_admin_token(svc: Service) -> None:
    credential_id, _ = await _key(svc)
    for path in (
        f"{AUDIT}/credential/{credential_id}/timeline",
        f"{AUDIT}/credential/{credential_id}/state",
        f"{AUDIT}/credential/{credential_id}/export",
        f"{AUDIT}/verify",
        f"{AUDIT}/issuer/state",
    ):
        response = await svc.client.get(path, headers={"Authorization": "Bearer nope-nope-nope"})
        assert (response.status_code, response.json()["error"]) == (401, "unauthorized")


async def test_timeline_and_state_before_and_after_a_revocation(svc: Service) -> None:
    credential_id, key = await _key(svc)
    issued_at = svc.clock.now()
    svc.clock.advance(timedelta(minutes=5))
    revoked = await svc.client.post(
        "/admin/revocations",
        json={"credential_id": credential_id, "reason": "leaked"},
        headers={**ADMIN, "X-Request-ID": "incident-42"},
    )
    assert revoked.status_code == 200, revoked.text
    timeline = await _get(svc, f"{AUDIT}/credential/{credential_id}/timeline")
    kinds = [(e["type"], e["actor"], e["client_ip"]) for e in timeline["entries"]]
    assert kinds == [
        ("registration.created", "agent", CLIENT_IP),
        ("credential.issued", "agent", CLIENT_IP),
        ("credential.revoked", "admin:bootstrap", None),  # the AUTHLEDGER_ADMIN_TOKEN
    ]
    last = timeline["entries"][-1]
    assert (last["reason"], last["note"], last["correlation_id"]) == (
        "operator",
        "leaked",
        "incident-42",
    )
    then = await _get(svc, f"{AUDIT}/credential/{credential_id}/state", at=issued_at.isoformat())
    assert [c["credential_id"] for c in then["could_act"]] == [credential_id]
    assert then["credential"]["scopes"] == ["api.read"]
    now = await _get(svc, f"{AUDIT}/credential/{credential_id}/state")
    assert (now["could_act"], now["credential"]["end_reason"]) == ([], "operator")
    assert key not in str(timeline) + str(then)


async def test_an_export_verifies_with_only_the_file_and_the_public_jwks(svc: Service) -> None:
    credential_id, _ = await _key(svc)
    await _key(svc)
    response = await svc.client.get(f"{AUDIT}/credential/{credential_id}/export", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    public = (await svc.client.get("/.well-known/jwks.json")).json()
    report = check(response.content, trusted_jwks=public)
    assert (report.verdict, report.events, report.keys) == ("verified", 2, "trusted JWKS")
    tampered = response.text.replace("api.read", "api.root", 1)
    assert tampered != response.text
    assert check(tampered, trusted_jwks=public).verdict == "broken"


async def test_verify_reports_the_chain(svc: Service) -> None:
    await _key(svc)
    report = await _get(svc, f"{AUDIT}/verify")
    assert (report["ok"], report["head"], report["checked"], report["first_break"]) == (
        True,
        2,
        2,
        None,
    )


async def test_verify_vouches_only_with_pinned_keys_and_the_published_checkpoint(
    backend: Backend, database_url: str, nats_names: NatsNames, tmp_path: Path
) -> None:
    """With AUTHLEDGER_AUDIT_KEYS and nothing published yet: `unvouched`, naming the missing
    stream; once the checkpoint worker signed and published: `verified`, the published
    checkpoint held."""
    pinned = tmp_path / "pinned.jwks"
    pinned.write_text('{"keys": []}')  # the service makes its key at start; pinned below
    names = {"NATS_STREAM": nats_names.stream, "NATS_SUBJECT_PREFIX": nats_names.subject_prefix}
    where = checkpoint_stream(nats_names)
    async with (
        running_service(backend, database_url, AUDIT_KEYS=str(pinned), **names) as svc,
        jetstream(backend.nats_url, delete=where.stream),
    ):
        await _key(svc)
        pool = svc.resources.pool
        pinned.write_text(
            json.dumps({"keys": list((await pinned_keys(pool, SECRET_KEY)).values())})
        )
        report = await _get(svc, f"{AUDIT}/verify")
        assert (report["ok"], report["verdict"]) == (True, "unvouched")
        assert report["not_vouched"] == [f"the stream {where.stream} does not exist"]
        publisher = Publisher(backend.nats_url, where)
        try:
            await sign_now(pool, KeyRing(SECRET_KEY), svc.clock, publisher)
        finally:
            await publisher.close()
        report = await _get(svc, f"{AUDIT}/verify")
        assert (report["verdict"], report["keys"], report["not_vouched"]) == (
            "verified",
            "pinned",
            [],
        )
        assert (report["published"]["position"], report["published"]["held"]) == (2, True)


async def test_a_provider_by_url_and_refusals(svc: Service) -> None:
    issuer = "https://idp.example"
    added = await svc.client.post("/admin/trusted-issuers", json={"issuer": issuer}, headers=ADMIN)
    assert added.status_code == 201
    state = await _get(svc, f"{AUDIT}/issuer/state", issuer=issuer)
    assert (state["issuer"]["issuer"], state["issuer"]["trusted"]) == (issuer, True)
    stream_id = state["subject"]["id"]
    timeline = await _get(svc, f"{AUDIT}/issuer/{stream_id}/timeline")
    assert [e["type"] for e in timeline["entries"]] == ["issuer.trusted"]
    for path, params, status in (
        (f"{AUDIT}/credential/cred_nope/state", {}, 404),
        (f"{AUDIT}/planet/x/state", {}, 404),
        (f"{AUDIT}/issuer/state", {"issuer": "https://nobody.example"}, 404),
        (f"{AUDIT}/issuer/{stream_id}/state", {"at": "yesterday"}, 400),
        (f"{AUDIT}/issuer/{stream_id}/state", {"at": "2026-11-01T10:00:00"}, 400),
        (f"{AUDIT}/issuer/{stream_id}/state", {"position": "x"}, 400),
    ):
        response = await svc.client.get(path, params=params, headers=ADMIN)
        assert response.status_code == status, (path, params, response.text)
        assert "error" in response.json()
    schema = await svc.client.get("/schema/openapi.json")
    assert f"{AUDIT}/verify" in schema.json()["paths"]
