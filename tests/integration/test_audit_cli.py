"""`authledger audit …` as an operator and an auditor run it: the console script against a
real Postgres (and NATS, where checkpoints are published); `audit check` with no database and
no AUTHLEDGER_* variable at all."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.support.audit import checkpoint_stream, nats_env, pin_keys
from tests.support.audit import run_authledger as _run
from tests.support.backends import Backend
from tests.support.nats import NatsNames
from tests.support.relay_support import jetstream
from tests.support.serve_process import SECRETS, authledger_env


async def test_state_export_check_and_verify(
    backend: Backend, database_url: str, nats_names: NatsNames, tmp_path: Path
) -> None:
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, **SECRETS, **nats_env(backend.nats_url, nats_names)
    )
    issuer = "https://idp.example"
    assert (await _run(["trust", "add", issuer], env))[0] == 0
    assert (await _run(["trust", "remove", issuer, "--reason", "offboarded"], env))[0] == 0
    status, out, err = await _run(["audit", "state", "issuer", issuer], env)
    assert status == 0, err
    answer = json.loads(out)
    assert (answer["issuer"]["issuer"], answer["issuer"]["trusted"]) == (issuer, False)
    status, out, err = await _run(["audit", "timeline", "issuer", issuer], env)
    assert status == 0, err
    entries = [json.loads(line) for line in out.splitlines()]
    assert [(e["type"], e["reason"]) for e in entries] == [
        ("issuer.trusted", None),
        ("issuer.removed", "offboarded"),
    ]
    assert all(e["actor"].startswith("cli:") for e in entries)
    exported = tmp_path / "slice.jsonl"
    status, _, err = await _run(["audit", "export", "issuer", issuer, "-o", str(exported)], env)
    assert status == 0, err
    bare = {k: v for k, v in authledger_env().items() if not k.startswith("AUTHLEDGER_")}
    status, out, err = await _run(["audit", "check", str(exported)], bare)  # no database
    assert (status, out.splitlines()[0]) == (
        0,
        "verified: 2 events in 1 run(s), 1 signed checkpoint(s); keys: file",
    ), err
    stream = checkpoint_stream(nats_names).stream
    async with jetstream(backend.nats_url, delete=stream):  # the export published its anchor
        pinned = await pin_keys(env, tmp_path / "pinned.jwks")
        status, out, err = await _run(["audit", "verify", "--keys", str(pinned)], env)
        assert status == 0, err
        assert out.startswith("verified: 2 events checked up to position 2")
        assert out.rstrip().endswith(f"published: position 2 holds (stream {stream})")
        status, out, err = await _run(["audit", "verify"], env)  # no pinned keys
        assert status == 3, err
        assert out.startswith("unvouched: 2 events checked up to position 2")
        assert out.splitlines()[1].startswith(
            "  not vouched: the checkpoint keys were read from the database being checked"
        )


async def test_verify_exits_1_naming_the_break_and_check_refuses_a_broken_file(
    database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    env = authledger_env(AUTHLEDGER_DATABASE_URL=database_url)
    for n in range(3):
        assert (await _run(["trust", "add", f"https://idp{n}.example"], env))[0] == 0
    conn = await asyncpg.connect(owner_database_url)  # the runtime may not
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
            await conn.execute("DELETE FROM events WHERE position = 2")
            await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    finally:
        await conn.close()
    status, out, _ = await _run(["audit", "verify"], env)
    assert status == 1
    assert (
        out.splitlines()[1]
        == "  position 2: position 2 is missing (the next stored is 3): rows deleted"
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"line":"header","format":"authledger-audit-export","version":1}\n')
    status, out, _ = await _run(["audit", "check", str(broken)], env)
    assert (status, out.split(":")[0]) == (1, "broken")
    missing = str(tmp_path / "no-such.json")
    status, _, err = await _run(["audit", "check", str(broken), "--jwks", missing], env)
    assert (status, err.startswith("authledger audit check:")) == (1, True)
    status, _, err = await _run(["audit", "state", "credential", "cred_nope"], env)
    assert (status, err.strip()) == (
        1,
        "authledger audit state: no credential cred_nope in tenant default",
    )
