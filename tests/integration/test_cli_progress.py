"""Long CLI work shows progress (issue 13, item 7): `replay`, `audit export` and `audit verify`
print plain lines on stderr when it is not a terminal (a tenth of the work at a time, and the
end), a bar with the rate and the time left when it is one; stdout keeps only the output."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import subprocess
from pathlib import Path

import asyncpg
import pytest

from events.store import EventStore
from service.cli.progress import ProgressReport
from service.commands.context import Caller, Context
from service.commands.trust_list import distrust, trust
from service.providers.trust import TrustedIssuer
from tests.support.audit import run_authledger
from tests.support.commands import command_context
from tests.support.serve_process import AUTHLEDGER, SECRETS, authledger_env

IDP = "https://idp.example"
OPERATOR = Caller(request_id="req-progress", client_ip="203.0.113.9", actor="cli:test")
PAIRS = 150  # 300 events on one issuer


@pytest.fixture
async def history(store: EventStore, pool: asyncpg.Pool) -> int:
    """300 events of one issuer (trusted, removed, again and again); the log's head."""
    ctx: Context = await command_context(store, pool)
    for n in range(PAIRS):
        await trust(ctx, TrustedIssuer(issuer=IDP, display_name=f"IdP {n}"), OPERATOR)
        await distrust(ctx, IDP, OPERATOR, "rotation")
    return int(await pool.fetchval("SELECT max(position) FROM events"))


def _lines(err: str, what: str) -> list[tuple[int, int]]:
    pattern = re.compile(rf"^{re.escape(what)}: ([\d,]+)/([\d,]+) \w+ \(\d+%\), [\d,]+ \w+/s")
    found = [pattern.match(line) for line in err.splitlines()]
    return [(int(m[1].replace(",", "")), int(m[2].replace(",", ""))) for m in found if m]


async def test_export_and_verify_report_progress_on_stderr(
    history: int, database_url: str, tmp_path: Path
) -> None:
    env = authledger_env(AUTHLEDGER_DATABASE_URL=database_url, **SECRETS)
    status, out, err = await run_authledger(["audit", "export", "issuer", IDP, "--no-anchor"], env)
    assert status == 0, err
    steps = _lines(err, "audit export")
    assert steps[-1] == (2 * PAIRS, 2 * PAIRS)
    assert len(steps) >= 10  # a line a tenth
    assert [done for done, _ in steps] == sorted({done for done, _ in steps})
    lines = [json.loads(line) for line in out.splitlines()]  # stdout: the export, nothing else
    assert [line["line"] for line in lines[: 2 * PAIRS + 1]] == ["header"] + ["event"] * 2 * PAIRS
    written = tmp_path / "slice.jsonl"
    cmd = ["audit", "export", "issuer", IDP, "--no-anchor", "-o", str(written)]
    status, out, err = await run_authledger(cmd, env)
    assert (status, out) == (0, ""), err
    assert _lines(err, "audit export")[-1] == (2 * PAIRS, 2 * PAIRS)
    assert written.read_text().splitlines()[1:] == [json.dumps(x, separators=(",", ":"),
        ensure_ascii=False) for x in lines[1:]]  # fmt: skip
    status, out, err = await run_authledger(["audit", "verify"], env)
    assert status == 3, err  # unvouched: keys from the database
    assert _lines(err, "audit verify")[-1] == (history, history)
    assert out.startswith(f"unvouched: {history} events checked")


async def test_replay_and_its_verify_report_progress_on_stderr(
    history: int, database_url: str, owner_database_url: str
) -> None:
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_OWNER_DATABASE_URL=owner_database_url
    )
    status, out, err = await run_authledger(["replay", "--verify"], env)
    assert status == 0, err
    assert _lines(err, "replay --verify")[-1] == (history, history)
    assert out.startswith(f"compared: {history} events up to position {history}")
    status, out, err = await run_authledger(["replay"], env)
    assert status == 0, err
    assert _lines(err, "replay")[-1] == (history, history)
    assert out.startswith(f"rebuilt and switched: {history} events")


async def test_on_a_terminal_verify_draws_a_bar_with_rate_and_eta(
    history: int, database_url: str
) -> None:
    """stderr a pseudo-terminal: rich's bar (count, rate, ETA), no plain line."""
    env = authledger_env(AUTHLEDGER_DATABASE_URL=database_url, COLUMNS="120", TERM="xterm")
    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            AUTHLEDGER, "audit", "verify", env=env, stdout=subprocess.PIPE, stderr=follower
        )
        os.close(follower)  # the child holds it; reading ends (EIO) once it exits
        screen = await asyncio.wait_for(asyncio.to_thread(_read_all, leader), 60)
        out = await proc.communicate()
    finally:
        os.close(leader)
    assert proc.returncode == 3
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    assert f"{history}/{history}" in text
    assert "positions/s" in text
    assert "ETA" in text
    assert not _lines(text, "audit verify")
    assert out[0].decode().startswith(f"unvouched: {history} events checked")


def _read_all(fd: int) -> bytes:
    read = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child has exited and all is read
            return read
        if not chunk:
            return read
        read += chunk


def test_plain_lines_come_a_tenth_at_a_time_and_at_the_end() -> None:
    stream = io.StringIO()
    with ProgressReport("job", stream=stream, terminal=False, every=3600) as progress:
        for done in range(1, 1001):
            progress(done, 1000)
    steps = _lines(stream.getvalue(), "job")
    assert [done for done, _ in steps] == list(range(100, 1001, 100))
    assert stream.getvalue().splitlines()[-1].startswith("job: 1,000/1,000 events (100%), ")
