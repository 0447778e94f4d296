"""Schemathesis against a real `authledger serve`: `make fuzz`, and (smaller) `make test`.

    python -m tests.fuzz.run [--examples N] [--phases P,...] [--workers W] [--seed S]
                             [--profiles main,authkit]

For each v0.6 profile asked (both by default; docs/design/v06-dialect.md section 12):

1. a fresh, migrated database on the test backend (tests/support/backends: the env's, the
   local 127.0.0.1 servers, containers or embedded ones);
2. `authledger serve` on a free port, rate limits off (the fuzzer is one client on one IP),
   both doors open, the v0.6 door in that profile (`AUTHLEDGER_V06_PROFILE`). The main
   profile's run fuzzes every operation; the AuthKit profile's only the v0.6 door's
   (`AUTHKIT_PATHS`: V1, V2, complete, the token endpoint, the person's pages), whose
   bodies differ there; the rest answers as in the main run;
3. one anonymous registration: its API key is the `agentCredential` for `/api/me`;
4. `schemathesis run` on `/schema/openapi.json` with tests/fuzz/schemathesis.toml: the admin
   token and that key, every check but positive_data_acceptance (see the file), and
   tests/fuzz/hooks.py's `no_event_on_refusal`;
5. the requests the server answered, by status class, read from its own `/metrics`;
6. SIGTERM: the server must stop cleanly (exit 0). Its log (warnings and errors, JSON) is
   kept in the report folder, beside schemathesis's JUnit report.

The exit status is 0 when every run was clean (schemathesis's exit 0, no 5xx, the server
stopped cleanly), else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from migrations.runner import migrate
from service.dev.embedded import free_port
from tests.support.backends import choose_backend, with_database
from tests.support.database_roles import OWNER_ROLE, as_owner, as_runtime, ensure_roles
from tests.support.waiting import answering, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONFIG = Path(__file__).with_name("schemathesis.toml")
ADMIN_TOKEN = "fuzz-admin-" + "t" * 24
SECRET_KEY = "fuzz-secret-" + "k" * 40
PHASES = "examples,coverage,fuzzing,stateful"
PROFILES = ("main", "authkit")
# The operations whose bodies or answers an AuthKit tenant changes, or that only it serves:
# V1, V2, complete, the token endpoint the nested assertion goes to, the confirm page and
# the sign-in pages in front of it.
AUTHKIT_PATHS = r"^/(agent/identity(/.*)?|oauth2/(token|revoke)|claim(/.*)?|login(/.*)?|logout)$"


@dataclass
class FuzzResult:
    exit_code: int  # schemathesis's
    output: str  # schemathesis's report
    server_status: int | None
    server_log: Path
    requests: Counter[str] = field(default_factory=Counter)  # answered, by status class

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def operations(self) -> int:
        """How many operations schemathesis selected (its report says)."""
        found = re.search(r"Operations:\s+(\d+) selected", self.output)
        return int(found.group(1)) if found else 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.server_status == 0 and not self.requests["5xx"]

    def summary(self) -> str:
        classes = ", ".join(f"{n} {c}" for c, n in sorted(self.requests.items()))
        return (
            f"{self.total} requests answered ({classes}) on {self.operations} operations; "
            f"schemathesis exit {self.exit_code}; "
            f"server exit {self.server_status}; server log {self.server_log}"
        )


async def run_fuzz(
    database_url: str,
    nats_url: str,
    *,
    examples: int,
    phases: str = PHASES,
    workers: int = 1,
    seed: int | None = None,
    max_time: int | None = None,
    report_dir: Path | None = None,
    owner_url: str | None = None,
    profile: str = "main",
) -> FuzzResult:
    """Serve on `database_url` (migrated here, as `owner_url` when given, if need be), the
    v0.6 door in `profile`, and fuzz it; see the module doc."""
    conn = await asyncpg.connect(owner_url or database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    report = report_dir or Path(tempfile.mkdtemp(prefix="authledger-fuzz-"))
    report.mkdir(parents=True, exist_ok=True)
    server_log = report / "serve.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}
    env |= {
        "AUTHLEDGER_DATABASE_URL": database_url,
        "AUTHLEDGER_NATS_URL": nats_url,
        "AUTHLEDGER_ADMIN_TOKEN": ADMIN_TOKEN,
        "AUTHLEDGER_SECRET_KEY": SECRET_KEY,
        "AUTHLEDGER_PUBLIC_URL": url,
        "AUTHLEDGER_RATE_LIMITS": "off",
        "AUTHLEDGER_DOORS": "v1 v06",  # both doors' routes answer, so both are fuzzed
        "AUTHLEDGER_V06_PROFILE": profile,
        "AUTHLEDGER_LOG_FORMAT": "json",
        "AUTHLEDGER_LOG_LEVEL": "warning",
    }
    with server_log.open("wb") as log:
        server = await asyncio.create_subprocess_exec(
            BIN / "authledger", "serve", "--port", str(port), env=env,
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                await _until_listening(http, server)
                agent = await http.post(
                    "/agent/auth",
                    json={"type": "anonymous", "requested_credential_type": "api_key"},
                )
                agent.raise_for_status()
                before = await _answered(http)
                exit_code, output = await _schemathesis(
                    url,
                    env={
                        **os.environ,
                        "AUTHLEDGER_FUZZ_ADMIN_TOKEN": ADMIN_TOKEN,
                        "AUTHLEDGER_FUZZ_AGENT_CREDENTIAL": agent.json()["credential"],
                        "AUTHLEDGER_FUZZ_DATABASE_URL": database_url,
                    },
                    args=_arguments(
                        examples=examples,
                        phases=phases,
                        workers=workers,
                        seed=seed,
                        max_time=max_time,
                        report=report,
                        paths=AUTHKIT_PATHS if profile == "authkit" else None,
                    ),
                )
                after = await _answered(http)
            after.subtract(before)
            after["2xx"] -= 1  # the first scrape
            server.send_signal(signal.SIGTERM)
            status: int | None = await asyncio.wait_for(server.wait(), 30)
        finally:
            if server.returncode is None:
                os.killpg(server.pid, signal.SIGKILL)
                await server.wait()
                status = None
    requests = Counter({k: v for k, v in after.items() if v})
    return FuzzResult(exit_code, output, status, server_log, requests)


def _arguments(
    *,
    examples: int,
    phases: str,
    workers: int,
    seed: int | None,
    max_time: int | None,
    report: Path,
    paths: str | None = None,
) -> list[str]:
    args = [
        f"--max-examples={examples}",
        f"--phases={phases}",
        f"--workers={workers}",
        "--report=junit",
        f"--report-dir={report}",
        "--max-failures=20",
    ]
    if seed is not None:
        args.append(f"--seed={seed}")
    if max_time is not None:
        args.append(f"--max-time={max_time}")
    if paths is not None:
        args.append(f"--include-path-regex={paths}")
    return args


async def _schemathesis(url: str, env: dict[str, str], args: Sequence[str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        BIN / "schemathesis", "--config-file", str(CONFIG), "run", f"{url}/schema/openapi.json",
        *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def _until_listening(http: httpx.AsyncClient, server: asyncio.subprocess.Process) -> None:
    async def ready() -> bool:
        if server.returncode is not None:
            raise RuntimeError(f"authledger serve exited with {server.returncode}")
        return await answering(http, "/readyz")

    await wait_until(ready, within=30, what="authledger serve ready")


async def _answered(http: httpx.AsyncClient) -> Counter[str]:
    """Requests the server has answered so far, by status class (its own /metrics)."""
    scraped = await http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    scraped.raise_for_status()
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            if sample.name == "authledger_http_requests_total":
                counts[sample.labels["status"][0] + "xx"] += int(sample.value)
    return counts


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__)
    parser.add_argument("--examples", type=int, default=int(os.environ.get("FUZZ_EXAMPLES", "400")))
    parser.add_argument("--phases", default=PHASES)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-time", type=int)
    parser.add_argument("--profiles", default=",".join(PROFILES), help="main, authkit or both")
    parser.add_argument("--report-dir", type=Path, help="default: a new temporary folder")
    args = parser.parse_args(argv)
    profiles = args.profiles.split(",")
    if not set(profiles) <= set(PROFILES):
        parser.error(f"--profiles: one or more of {', '.join(PROFILES)}")
    backend = choose_backend()
    results: list[tuple[str, FuzzResult]] = []
    await ensure_roles(backend.database_url)  # serve as the runtime role, as in production
    admin = await asyncpg.connect(backend.database_url)
    try:
        for profile in profiles:
            name = f"authledger_fuzz_{uuid.uuid4().hex[:12]}"
            await admin.execute(f'CREATE DATABASE "{name}" OWNER {OWNER_ROLE}')
            try:
                url = with_database(backend.database_url, name)
                report = None if args.report_dir is None else args.report_dir / profile
                result = await run_fuzz(
                    as_runtime(url),
                    backend.nats_url,
                    owner_url=as_owner(url),
                    examples=args.examples,
                    phases=args.phases,
                    workers=args.workers,
                    seed=args.seed,
                    max_time=args.max_time,
                    report_dir=report,
                    profile=profile,
                )
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(result.output)
            results.append((profile, result))
    finally:
        await admin.close()
        backend.stop()
    for profile, result in results:
        print(f"{profile}: {result.summary()}")
    return 0 if all(result.ok for _, result in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
