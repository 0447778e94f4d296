"""The `authledger` console script against real Postgres and NATS, as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence

import asyncpg
import pytest

from migrations.runner import available
from tests.support.backends import Backend, with_database
from tests.support.serve_process import AUTHLEDGER, SECRETS, authledger_env, serving


async def _run(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, *args, env=dict(env), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _applied_versions(database_url: str) -> list[int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return [r["version"] for r in rows]


async def test_migrate_applies_once_then_has_nothing_to_do(empty_database_url: str) -> None:
    """A first `migrate` applies every migration; a second one applies nothing and succeeds."""
    env = authledger_env(AUTHLEDGER_DATABASE_URL=empty_database_url)
    names = [f"{m.version:04d}_{m.name}" for m in available()]
    status, out, err = await _run(["migrate"], env)
    assert status == 0, err
    assert out.splitlines() == [f"applied {name}" for name in names]
    assert "migrate.applied" not in err  # each one said once, on stdout, not logged again
    status, out, err = await _run(["migrate"], env)
    assert status == 0, err
    assert out.startswith("nothing to apply")
    assert await _applied_versions(empty_database_url) == [m.version for m in available()]


async def test_two_concurrent_migrates_apply_each_migration_once(empty_database_url: str) -> None:
    """Two `migrate` processes at once both succeed, and each migration is applied once."""
    env = authledger_env(AUTHLEDGER_DATABASE_URL=empty_database_url)
    results = await asyncio.gather(_run(["migrate"], env), _run(["migrate"], env))
    assert [status for status, _, _ in results] == [0, 0], [err for _, _, err in results]
    applied = [
        line for _, out, _ in results for line in out.splitlines() if line.startswith("applied")
    ]
    assert len(applied) == len(available())
    assert await _applied_versions(empty_database_url) == [m.version for m in available()]


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        ("serve", "AUTHLEDGER_OTP_TTL", "5"),
        ("worker", "AUTHLEDGER_NATS_URL", "localhost:4222"),
        ("migrate", "AUTHLEDGER_DATABASE_URL", ""),
        ("dev", "AUTHLEDGER_LOG_LEVEL", "chatty"),
    ],
)
async def test_bad_variable_exits_2_with_one_stderr_line(
    backend: Backend, command: str, variable: str, value: str
) -> None:
    """A bad or missing AUTHLEDGER_ variable: exit status 2 and one stderr line naming it."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=backend.database_url,
        AUTHLEDGER_NATS_URL=backend.nats_url,
        **SECRETS,
    )
    env[variable] = value
    status, out, err = await _run([command], env)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"{variable}: ")
    assert "Traceback" not in err


async def test_a_misspelt_variable_warns_once_and_start_up_goes_on(
    owner_database_url: str,
) -> None:
    """An unknown AUTHLEDGER_ variable is one warning naming the closest one; migrate succeeds."""
    env = authledger_env(
        AUTHLEDGER_OWNER_DATABASE_URL=owner_database_url,  # the owner's URL alone will do
        AUTHLEDGER_REGISTRATON_TTL="5",
        AUTHLEDGER_TEST_BACKEND="env",  # the tests' own variables are known
    )
    status, out, err = await _run(["migrate"], env)
    assert status == 0, err
    assert out.startswith("nothing to apply")
    [line] = err.splitlines()
    warning = json.loads(line)
    assert warning["event"] == "settings.unknown_variable"
    assert warning["level"] == "warning"
    assert warning["variable"] == "AUTHLEDGER_REGISTRATON_TTL"
    assert warning["closest"] == "AUTHLEDGER_REGISTRATION_TTL"


async def test_unreachable_database_exits_1_with_one_line(backend: Backend) -> None:
    """`migrate` against a database that does not exist fails in one line, status 1."""
    missing = with_database(backend.database_url, f"authledger_missing_{uuid.uuid4().hex[:8]}")
    status, _, err = await _run(["migrate"], authledger_env(AUTHLEDGER_DATABASE_URL=missing))
    assert status == 1
    assert err.strip().splitlines()[-1].startswith("authledger migrate: cannot connect")
    assert "Traceback" not in err


async def test_serve_is_healthy_and_ready_when_migrated(
    backend: Backend, database_url: str
) -> None:
    """`serve` answers /healthz and /readyz 200, errors as JSON, and stops cleanly on SIGTERM."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    async with serving([], env) as server:
        health = await server.http.get("/healthz", headers={"X-Request-ID": "probe-1"})
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert health.headers["x-request-id"] == "probe-1"
        ready = await server.http.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
        missing = await server.http.get("/no/such/path")
        assert missing.status_code == 404
        assert missing.json() == {"error": "not_found", "message": "Not Found"}
        wrong_method = await server.http.post("/healthz", content=b"{}")
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"] == "method_not_allowed"
        schema = await server.http.get("/schema/openapi.json")
        assert {"/healthz", "/readyz"} <= set(schema.json()["paths"])
        status, err = await server.stop()
    assert status == 0, err
    assert SECRETS["AUTHLEDGER_ADMIN_TOKEN"] not in err
    assert SECRETS["AUTHLEDGER_SECRET_KEY"] not in err


async def test_serve_is_not_ready_on_an_unmigrated_database(
    backend: Backend, empty_database_url: str
) -> None:
    """On an unmigrated database /healthz is 200 but /readyz is 503 naming the migrations."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=empty_database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    async with serving([], env) as server:
        assert (await server.http.get("/healthz")).status_code == 200
        operator = {"Authorization": f"Bearer {SECRETS['AUTHLEDGER_ADMIN_TOKEN']}"}
        ready = await server.http.get("/readyz", headers=operator)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        assert any("migrations pending" in reason for reason in body["reasons"])
        assert not any("nats" in reason for reason in body["reasons"])
        status, err = await server.stop()
    assert status == 0, err


@pytest.mark.parametrize("http_server", ["granian", "uvicorn"])
async def test_serve_with_several_processes_shares_the_port(
    backend: Backend, database_url: str, http_server: str
) -> None:
    """`serve --workers 2` answers on one port from two processes and stops cleanly, with
    either HTTP server (AUTHLEDGER_HTTP_SERVER)."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url,
        AUTHLEDGER_NATS_URL=backend.nats_url,
        AUTHLEDGER_HTTP_SERVER=http_server,
        **SECRETS,
    )
    serving_line = f'"server": "{http_server}"'
    async with serving(["--workers", "2"], env) as server:
        await server.wait_for_log(serving_line, count=2)
        responses = [await server.http.get("/readyz") for _ in range(5)]
        assert [r.status_code for r in responses] == [200] * 5
        assert len({r.headers["x-request-id"] for r in responses}) == 5
        posted = await server.http.post("/agent/auth", content=b"{not json")
        assert (posted.status_code, posted.json()["error"]) == (400, "invalid_request")
        status, err = await server.stop()
    assert status == 0, err
    assert err.count(serving_line) == 2
    pids = {json.loads(line)["pid"] for line in err.splitlines() if serving_line in line}
    assert len(pids) == 2


async def test_trust_and_revoke_commands_record_events_as_the_cli(database_url: str) -> None:
    """`authledger trust add|list|remove` and `revoke` work with only the database URL."""
    env = authledger_env(AUTHLEDGER_DATABASE_URL=database_url)
    idp = "https://idp.example"
    status, out, err = await _run(["trust", "add", idp, "--alg", "EdDSA", "--display-name",
                                   "IdP", "--no-link-by-email"], env)  # fmt: skip
    assert (status, out.strip()) == (0, f"trusted {idp}"), err
    status, out, err = await _run(["trust", "list"], env)
    assert status == 0, err
    [entry] = [json.loads(line) for line in out.splitlines()]
    assert (entry["issuer"], entry["algorithms"], entry["link_by_verified_email"]) == (
        idp,
        ["EdDSA"],
        False,
    )
    status, _, err = await _run(["trust", "add", "http://idp.example"], env)
    assert status == 1
    assert err.strip().endswith("issuer: must use https")
    status, out, err = await _run(["trust", "remove", idp, "--reason", "offboarded"], env)
    assert (status, out.strip()) == (0, f"removed {idp}"), err
    status, _, err = await _run(["trust", "remove", idp], env)
    assert status == 1
    assert "not on the trust list" in err
    status, out, err = await _run(["revoke", "--user", "usr_nobody", "--reason", "drill"], env)
    assert status == 0, err
    assert out.strip() == "revoked 0 credential(s) of user usr_nobody"
    status, _, err = await _run(["revoke"], env)
    assert status == 2
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT type, metadata->>'actor' AS actor FROM events ORDER BY position"
        )
    finally:
        await conn.close()
    assert [r["type"] for r in rows] == ["issuer.trusted", "issuer.removed"]
    assert all(r["actor"].startswith("cli:") for r in rows)


async def test_migrate_as_the_runtime_role_fails_in_one_line(database_url: str) -> None:
    """`migrate` given only the runtime role's URL cannot migrate, and says what to set."""
    status, out, err = await _run(["migrate"], authledger_env(AUTHLEDGER_DATABASE_URL=database_url))
    assert status == 1
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("authledger migrate: migration failed: permission denied")
    assert "AUTHLEDGER_OWNER_DATABASE_URL" in line


async def test_replay_and_verify_commands(database_url: str, owner_database_url: str) -> None:
    """`replay` (as the owner) switches to a rebuild; `replay --verify` exits 1 naming a
    corrupted row."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_OWNER_DATABASE_URL=owner_database_url
    )
    status, out, err = await _run(["trust", "add", "https://idp.example"], env)
    assert status == 0, err
    status, out, err = await _run(["replay"], env)
    assert status == 0, err
    assert out.startswith("rebuilt and switched: 1 events up to position 1")
    conn = await asyncpg.connect(owner_database_url)  # the runtime may not (guards.sql)
    try:
        await conn.execute("UPDATE trusted_issuers SET display_name = 'Evil'")
    finally:
        await conn.close()
    status, out, err = await _run(["replay", "--verify"], env)
    assert status == 1, err
    assert "trusted_issuers [default, https://idp.example] differs: display_name" in out


async def test_tenant_commands(database_url: str) -> None:
    """`authledger tenant add|list|configure|disable|enable`, with start-up's own checks."""
    env = authledger_env(AUTHLEDGER_DATABASE_URL=database_url)
    acme = ["--host", "auth.acme.example", "--set", "public_url=https://auth.acme.example"]
    status, out, err = await _run(["tenant", "add", "acme", *acme], env)
    assert (status, out.strip()) == (0, "created acme"), err
    status, _, err = await _run(
        ["tenant", "add", "beta", "--host", "auth.acme.example",
         "--set", "public_url=https://beta.example"], env)  # fmt: skip
    assert status == 1
    assert "hosts: already in use: auth.acme.example (acme)" in err
    status, _, err = await _run(["tenant", "configure", "acme", "--set", "registration_ttl=5"], env)
    assert status == 1
    assert "settings: registration_ttl:" in err
    status, out, err = await _run(
        ["tenant", "configure", "acme", "--set", "resource_name=Acme", "--host", "a.example"], env
    )
    assert (status, out.strip()) == (0, "configured acme"), err
    status, out, err = await _run(["tenant", "disable", "acme", "--reason", "unpaid"], env)
    assert (status, out.strip()) == (0, "disabled acme"), err
    status, out, err = await _run(["tenant", "list"], env)
    assert status == 0, err
    [listed] = [json.loads(line) for line in out.splitlines()]
    assert listed == {
        "tenant_id": "acme", "hosts": ["a.example"], "active": False, "version": 3,
        "settings": {"public_url": "https://auth.acme.example", "resource_name": "Acme"},
    }  # fmt: skip
    status, _, err = await _run(["tenant", "add", "default", *acme], env)
    assert status == 1
    assert "not 'default'" in err
