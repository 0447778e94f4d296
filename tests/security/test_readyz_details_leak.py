"""Security issue 12, finding 9: `/readyz` details only with a credential.

Before, anyone could read why a process was not ready: pending migration names (the schema's
version), which backing service was down and the exception type. After, `/readyz` answers a
stranger (or a wrong credential) with its status only; the operator's credential gets the
reasons, the version, NATS and the tenants that failed to load.
"""

from __future__ import annotations

import asyncio
import json

from tests.support.backends import Backend
from tests.support.serve_process import AUTHLEDGER, SECRETS, authledger_env, serving

OPERATOR_TOKEN = SECRETS["AUTHLEDGER_ADMIN_TOKEN"]


async def test_readyz_tells_a_stranger_only_its_status(
    backend: Backend, empty_database_url: str
) -> None:
    """Not ready (an unmigrated database): no credential, a wrong one or a malformed header
    get `{"status": "unavailable"}` and nothing more; the operator gets the reasons."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=empty_database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    async with serving([], env) as server:
        for headers in (
            {},
            {"Authorization": "Bearer " + "x" * 32},
            {"Authorization": "Bearer " + OPERATOR_TOKEN[:-1]},
            {"Authorization": "Basic " + OPERATOR_TOKEN},
            {"Authorization": OPERATOR_TOKEN},
        ):
            answer = await server.http.get("/readyz", headers=headers)
            assert answer.status_code == 503, headers
            assert answer.json() == {"status": "unavailable"}, headers
            assert "migration" not in answer.text
            assert "0001" not in answer.text
        operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        detailed = await server.http.get("/readyz", headers=operator)
        assert detailed.status_code == 503
        body = detailed.json()
        assert body["status"] == "unavailable"
        assert any("migrations pending" in reason for reason in body["reasons"])
        assert body["version"]
        assert body["nats"] == "connected"
        assert body["tenants_unavailable"] == ["*"]  # the tenants table does not exist yet
        status, err = await server.stop()
    assert status == 0, err


async def _grant(database_url: str, *args: str) -> str:
    """A scoped credential granted with the operator CLI; its token."""
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, "access", "grant", *args, "--label", "readyz-test",
        env=authledger_env(AUTHLEDGER_DATABASE_URL=database_url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    token = json.loads(out)["token"]
    assert isinstance(token, str)
    return token


async def test_readyz_when_ready_says_ok_and_only_ok(backend: Backend, database_url: str) -> None:
    """Ready: a stranger gets exactly `{"status": "ok"}`; the operator and a metrics reader the
    details; a credential of another scope (introspection) the status alone."""
    metrics = await _grant(database_url, "--scope", "metrics")
    introspection = await _grant(
        database_url, "--scope", "introspection", "--client-id", "orders-api"
    )
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    async with serving([], env) as server:
        plain = await server.http.get("/readyz")
        assert (plain.status_code, plain.json()) == (200, {"status": "ok"})
        assert plain.headers["cache-control"] == "no-store"
        operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        detailed = (await server.http.get("/readyz", headers=operator)).json()
        assert detailed["status"] == "ok"
        assert detailed["reasons"] == []
        assert detailed["tenants_unavailable"] == []
        scraped = await server.http.get("/readyz", headers={"Authorization": f"Bearer {metrics}"})
        assert scraped.json() == detailed
        other = await server.http.get(
            "/readyz", headers={"Authorization": f"Bearer {introspection}"}
        )
        assert (other.status_code, other.json()) == (200, {"status": "ok"})
        status, err = await server.stop()
    assert status == 0, err
