"""`authledger serve` as the server under test: its environment (a database, a NATS stream and
subject prefix of its own, rate limits off, JSON logs at warning level), its schema, its
process, and plain HTTP calls to it for set-up and checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from console import log
from process_use import process_name, process_tree

NATS_URL = "nats://127.0.0.1:4222"

HOST = "127.0.0.1"

READY_TIMEOUT = 60.0

STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def authledger_command() -> str:
    beside = Path(sys.executable).parent / "authledger"
    if beside.exists():
        return str(beside)
    found = shutil.which("authledger")
    if found is None:
        raise SystemExit("the authledger command is not installed (pip install -e .)")
    return found


class Server:
    """`authledger serve --workers N` as a subprocess in a session of its own."""

    def __init__(self, env: Mapping[str, str], port: int, log_path: Path, workers: int) -> None:
        self.env = dict(env)
        self.port = port
        self.log_path = log_path
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop_status: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the server is not running")
        return self.proc.pid

    def http_children(self) -> list[int]:
        """The HTTP processes: the parent's children, less multiprocessing's resource tracker."""
        return [
            pid
            for pid in process_tree(self.pid)[1:]
            if process_name(pid) not in ("resource_tracker",)
        ]

    def start(self) -> None:
        argv = [
            authledger_command(),
            "serve",
            "--workers",
            str(self.workers),
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own command line
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                status, body = await asyncio.to_thread(http_call, "GET", self.url + "/readyz")
            except OSError as exc:
                last = repr(exc)
            else:
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the server was not ready within {READY_TIMEOUT:g} s: {last}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its process group if it has not stopped in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.stop_status = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"the server did not stop within {STOP_TIMEOUT:g} s: killing its group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.stop_status = self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> list[str]:
        """Lines of the server's log at level error or above (or not JSON at all)."""
        problems = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ["(no server log)"]
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                problems.append(line)
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                problems.append(line)
        return problems


def http_call(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on a fresh connection (set-up and checks only; wrk does the load)."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"only the local server: {url}")
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only, checked above
        url, data=body, method=method, headers=dict(headers or {})
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def server_env(database_url: str, suffix: str) -> dict[str, str]:
    """The server's environment: ours, plus its own database, NATS stream and secrets."""
    env = {
        **os.environ,
        "AUTHLEDGER_DATABASE_URL": database_url,
        "AUTHLEDGER_NATS_URL": NATS_URL,
        "AUTHLEDGER_NATS_STREAM": f"BENCH_HTTP_{suffix}",
        "AUTHLEDGER_NATS_SUBJECT_PREFIX": f"bench_http_{suffix}",
        "AUTHLEDGER_SECRET_KEY": secrets.token_urlsafe(48),
        "AUTHLEDGER_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "AUTHLEDGER_RATE_LIMITS": "off",
        "AUTHLEDGER_LOG_LEVEL": "warning",
        "AUTHLEDGER_LOG_FORMAT": "json",
    }
    env.pop("AUTHLEDGER_PUBLIC_URL", None)
    return env


async def migrate(env: Mapping[str, str]) -> None:
    log("authledger migrate")
    migrated = await asyncio.to_thread(
        subprocess.run,
        [authledger_command(), "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if migrated.returncode != 0:
        raise RuntimeError(f"authledger migrate failed: {migrated.stderr.strip()}")
