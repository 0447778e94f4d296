"""The README's "First five minutes", run as written against a real `authledger dev` started
from an empty environment (no AUTHLEDGER_* variable, a fresh folder): the curl walkthrough, the
operator CLI next to it (`trust add`, `revoke`, `audit timeline`, `subscribe`) and `make reset`.

The commands come from the section's ```sh blocks, so this fails when the README and the
service disagree. Only the port changes (`make run` serves 8000, which may be taken here) and
`make run` itself is `authledger dev`, which is what its recipe runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.dev.embedded import free_port
from tests.support.waiting import answering, wait_until

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
README_URL = "http://127.0.0.1:8000"
USING_STACK = "authledger: using the dev stack in .authledger/stack.json"
pytestmark = [pytest.mark.embedded, pytest.mark.timeout(300)]


def first_five_minutes() -> list[list[str]]:
    """The commands of each ```sh block of the README's section (comments dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## First five minutes\n")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.DOTALL)
    return [
        [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
        for block in blocks
    ]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}


@pytest.fixture
def folder() -> Iterator[Path]:
    """A fresh folder as the newcomer's clone: `.venv` beside what `make run` makes.

    In the system temp dir, not pytest's: embedded Postgres runs as another user when we are
    root and needs every parent folder traversable (see tests/e2e/test_dev_command.py).
    """
    path = Path(tempfile.mkdtemp(prefix="authledger-newcomer-"))
    (path / ".venv").symlink_to(VENV)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def dev(folder: Path, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """`make run`'s `authledger dev` in `folder`, serving; stopped with SIGTERM after."""
    log = (folder / "dev.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        ".venv/bin/authledger", "dev", "--port", str(port), cwd=folder, env=clean_env(),
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    log.close()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def ready() -> bool:
                if proc.returncode is not None:
                    pytest.fail(f"dev exited: {(folder / 'dev.log').read_text()}")
                return await answering(http, "/readyz")

            await wait_until(ready, within=90, what="`authledger dev` ready", every=0.2)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


@dataclass
class Ran:
    command: str
    status: int
    out: str
    err: str


async def run_in_one_shell(folder: Path, commands: list[str]) -> list[Ran]:
    """Run `commands` in order in one bash (their variables carry over), each one's status,
    stdout and stderr apart."""
    script = ["set -uo pipefail"]
    for i, command in enumerate(commands):
        script += [command, f'echo "@@@{i} $?"', f'echo "@@@{i}" >&2']
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", "\n".join(script), cwd=folder, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    outs = re.split(r"@@@\d+ \d+\n", out.decode())
    statuses = [int(s) for s in re.findall(r"@@@\d+ (\d+)\n", out.decode())]
    errs = re.split(r"@@@\d+\n", err.decode())
    assert len(statuses) == len(commands), (out.decode(), err.decode())
    return [
        Ran(c, s, o.strip(), e.strip())
        for c, s, o, e in zip(commands, statuses, outs, errs, strict=False)
    ]


async def run(folder: Path, *command: str) -> Ran:
    """One command in `folder`, with no terminal (stdin empty)."""
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=folder, env=clean_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Ran(" ".join(command), proc.returncode, out.decode().strip(), err.decode().strip())


def the(ran: list[Ran], start: str, nth: int = 0) -> Ran:
    """The `nth` command run that starts with `start`."""
    found = [r for r in ran if r.command.startswith(start)]
    assert len(found) > nth, f"the README runs no {start!r} (#{nth})"
    return found[nth]


def cli_said_stack(ran: Ran) -> None:
    """A CLI command that took the dev stack said so in exactly one stderr line."""
    lines = [line for line in ran.err.splitlines() if line.startswith("authledger: ")]
    assert len(lines) == 1, ran
    assert lines[0].startswith(USING_STACK), ran


async def read_until(stream: asyncio.StreamReader | None, needle: str, within: float) -> list[str]:
    """The lines read up to the first holding `needle`, that one last."""
    assert stream is not None
    seen: list[str] = []
    async with asyncio.timeout(within):
        while True:
            line = (await stream.readline()).decode().rstrip("\n")
            assert line, f"subscribe exited; it printed {seen}"
            seen.append(line)
            if needle in line:
                return seen


async def test_the_readme_first_five_minutes_work_from_an_empty_environment(folder: Path) -> None:
    """Every command of the section answers as the README says, the CLI finds the dev stack
    with no variable set (one stderr line each), and `make reset` asks before deleting."""
    if shutil.which("curl") is None or shutil.which("jq") is None:
        pytest.skip("the walkthrough needs curl and jq")
    blocks = first_five_minutes()
    assert blocks[0] == ["make run"]
    assert blocks[-1] == ["make reset"]
    assert "\t$(BIN)/authledger dev\n" in (ROOT / "Makefile").read_text()
    port = free_port()
    commands = [c.replace(README_URL, f"http://127.0.0.1:{port}") for b in blocks[1:-1] for c in b]
    [subscribe] = [c for c in commands if " subscribe" in c]
    in_shell = [c for c in commands if c != subscribe]

    async with dev(folder, port):
        card = json.loads((folder / ".authledger" / "stack.json").read_text())
        assert card["http_url"] == f"http://127.0.0.1:{port}"
        assert (folder / ".authledger" / "stack.json").stat().st_mode & 0o777 == 0o600
        feed = await asyncio.create_subprocess_exec(
            *subscribe.split(), cwd=folder, env=clean_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            said = await read_until(feed.stderr, "caught up", 60)
            assert said[0].startswith(USING_STACK), said
            assert said[0].endswith(
                ": NATS, HTTP URL, admin token (set AUTHLEDGER_* to use others)"
            )
            assert f"at {card['nats_url']} from now on" in said[1]
            ran = await run_in_one_shell(folder, in_shell)
            assert [r.command for r in ran if r.status != 0] == [], ran

            registered = json.loads(the(ran, 'echo "$REGISTERED"').out)
            assert registered["credential"].startswith("sk_test_")
            assert registered["scopes"] == ["api.read"]
            me = json.loads(the(ran, "curl -s $BASE/api/me").out)
            assert me["claim_state"] == "unclaimed"
            assert me["registration_id"] == registered["registration_id"]
            claimed = json.loads(the(ran, "curl -s $BASE/agent/auth/claim/complete").out)
            assert claimed["credential"].startswith("sk_test_"), claimed
            assert "api.write" in claimed["scopes"]

            assert "error" not in the(ran, "curl -s $BASE/admin/trusted-issuers").out
            trusted = the(ran, ".venv/bin/authledger trust add")
            assert trusted.out == "trusted https://idp.example.com"
            listed = the(ran, ".venv/bin/authledger trust list")
            assert json.loads(listed.out)["display_name"] == "Example IdP"
            revoked = the(ran, ".venv/bin/authledger revoke")
            assert revoked.out.endswith(
                f"revoked 1 credential(s) of registration {registered['registration_id']}"
            )
            assert json.loads(the(ran, "curl -s $BASE/api/me", 1).out)["error"]
            timeline = the(ran, ".venv/bin/authledger audit timeline")
            entries = [json.loads(line) for line in timeline.out.splitlines()]
            assert [e["type"] for e in entries][-1] == "credential.revoked"
            created = next(e for e in entries if e["type"] == "registration.created")
            assert created["client_ip"] == "127.0.0.1"  # opened with the dev stack's secret key
            for cli in (trusted, listed, revoked, timeline):
                cli_said_stack(cli)

            credential_id = me["credential_id"]
            [*_, line] = await read_until(feed.stdout, credential_id, 30)
            assert "revoked:operator" in line
        finally:
            if feed.returncode is None:
                feed.send_signal(signal.SIGINT)
                await asyncio.wait_for(feed.wait(), 20)
        assert feed.stderr is not None
        assert (await feed.stderr.read()).decode().count("authledger: ") == 0  # said once
        assert feed.returncode == 0

    assert not (folder / ".authledger" / "stack.json").exists()
    gone = await run(folder, ".venv/bin/authledger", "trust", "list")
    assert gone.status == 2
    assert gone.err == "AUTHLEDGER_DATABASE_URL: required but not set"

    make = ["make", "-s", "-f", str(ROOT / "Makefile"), *blocks[-1][0].split()[1:]]
    asked = await run(folder, *make)  # no terminal: refused, nothing deleted
    assert asked.status != 0
    assert "FORCE=1" in asked.out
    assert (folder / ".authledger").is_dir()
    forced = await run(folder, *make, "FORCE=1")
    assert forced.status == 0, forced
    assert not (folder / ".authledger").exists()
