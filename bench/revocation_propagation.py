"""Revocation propagation: from the revoke response to (a) a NATS subscriber holding the
revocation and (b) a second service process refusing the credential.

    .venv/bin/python bench/revocation_propagation.py [--count N] [--database-url URL]
                                                     [--nats-url URL]

Creates a fresh database on the server behind the admin URL (default
postgresql://postgres@127.0.0.1:5432/postgres, or AUTHLEDGER_BENCH_DATABASE_URL), runs
`authledger migrate`, and starts the deployment's shape on loopback, each a process of its
own: two `authledger serve` (A and B, on one database, rate limits off, logs at warning as
JSON into files) and one `authledger worker` (the relay, the revocation feed, the expiry
worker, ...), on NATS at --nats-url (default nats://127.0.0.1:4222) with a stream and subject
prefix of their own. In this process runs the resource servers' client,
`subscriber.RevocationSubscriber` (in memory, live), and an httpx client for A and B.

Then N (default 1,000) anonymous keys are registered through A, and each is checked once on B
(`GET /api/me`, 200), so that B holds it in its credential cache as live: B's refusal must
come from following the log, not from a first read. Then, one credential at a time:

- POST /admin/revocations {credential_id} to A; t0 = when A's response has arrived;
- (a) the moment the subscriber's callback holds that credential (it may come before t0:
  counted as 0, and counted apart);
- (b) B is polled back to back (`GET /api/me` with the key, on a kept-alive connection)
  until it answers 401: the moment that answer arrives. The polling runs concurrently with
  the wait for (a).

Each wait is capped at 5 s (a miss is reported). Prints the machine, the load at start and
end, other database sessions, p50/p90/p99/max of (a) and (b) in ms, and the targets (p99 <
100 ms for both). The loop is uvloop, as the service runs on. Stops every process (SIGTERM)
and drops the database at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
from machine import cpu_model, load_average, memory_total, other_sessions
from scratch_database import add_database_url, with_database

from service.dev.embedded import free_port
from subscriber.client import RevocationSubscriber, Source, SubscriberConfig
from subscriber.wire import Revocation

AUTHLEDGER = Path(sys.executable).with_name("authledger")
ANONYMOUS = {"type": "anonymous", "requested_credential_type": "api_key"}
TARGET_MS = 100.0
WAIT = 5.0


def log(message: str) -> None:
    print(message, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no values"
    p50, p90, p99 = (percentile(values, f) for f in (0.5, 0.9, 0.99))
    return (
        f"{name}: n={len(values)}  p50 {p50:.2f} ms  p90 {p90:.2f} ms  p99 {p99:.2f} ms  "
        f"max {max(values):.2f} ms  {'meets' if p99 < TARGET_MS else 'MISSES'} "
        f"p99 < {TARGET_MS:.0f} ms"
    )


@contextlib.asynccontextmanager
async def process(args: list[str], env: dict[str, str], out: Path) -> AsyncIterator[None]:
    with out.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            str(AUTHLEDGER), *args, env=env, stdout=sink, stderr=sink, start_new_session=True
        )
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


async def ready(url: str, within: float = 60.0) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {within}s")
            await asyncio.sleep(0.2)


class Arrivals:
    """When the subscriber came to hold each credential (perf_counter)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.events: dict[str, asyncio.Event] = {}

    def event(self, credential_id: str) -> asyncio.Event:
        return self.events.setdefault(credential_id, asyncio.Event())

    def __call__(self, claims: Revocation, _: Source) -> None:
        self.at.setdefault(claims.credential_id, time.perf_counter())
        self.event(claims.credential_id).set()


async def refused_at(b: httpx.AsyncClient, key: str) -> float:
    headers = {"Authorization": f"Bearer {key}"}
    while True:
        answer = await b.get("/api/me", headers=headers)
        if answer.status_code == 401:
            return time.perf_counter()
        if answer.status_code != 200:
            raise RuntimeError(f"B answered {answer.status_code}")


async def measure(args: argparse.Namespace, database_url: str, folder: Path) -> None:  # noqa: PLR0915
    tag = secrets.token_hex(4)
    stream, prefix = f"BENCH_REVOCATIONS_{tag.upper()}", f"benchrev{tag}"
    admin_token, port_a, port_b = secrets.token_urlsafe(24), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}
    env |= {
        "AUTHLEDGER_DATABASE_URL": database_url,
        "AUTHLEDGER_NATS_URL": args.nats_url,
        "AUTHLEDGER_NATS_STREAM": stream,
        "AUTHLEDGER_NATS_SUBJECT_PREFIX": prefix,
        "AUTHLEDGER_ADMIN_TOKEN": admin_token,
        "AUTHLEDGER_SECRET_KEY": secrets.token_urlsafe(40),
        "AUTHLEDGER_RATE_LIMITS": "off",
        "AUTHLEDGER_LOG_FORMAT": "json",
        "AUTHLEDGER_LOG_LEVEL": "warning",
        "AUTHLEDGER_PUBLIC_URL": f"http://127.0.0.1:{port_a}",
        "AUTHLEDGER_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",
    }
    migrate = await asyncio.create_subprocess_exec(
        str(AUTHLEDGER), "migrate", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    if await migrate.wait() != 0:
        raise RuntimeError("authledger migrate failed")
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    async with (
        process(["serve", "--port", str(port_a)], env, folder / "serve-a.log"),
        process(["serve", "--port", str(port_b)], env, folder / "serve-b.log"),
        process(["worker"], env, folder / "worker.log"),
    ):
        await asyncio.gather(ready(url_a), ready(url_b))
        log(f"A {url_a}, B {url_b}, a worker; stream {stream}; logs in {folder}")
        arrivals = Arrivals()
        config = SubscriberConfig(
            nats_url=args.nats_url,
            service_url=url_a,
            stream=stream,
            subject_prefix=prefix,
            admin_token=admin_token,
            start="live",
        )
        subscriber = RevocationSubscriber(config, on_revocation=arrivals)
        following = asyncio.create_task(subscriber.run())
        admin = {"Authorization": f"Bearer {admin_token}"}
        async with (
            httpx.AsyncClient(base_url=url_a, timeout=10) as a,
            httpx.AsyncClient(base_url=url_b, timeout=10) as b,
        ):
            await asyncio.wait_for(subscriber.caught_up.wait(), 30)
            keys: list[tuple[str, str]] = []
            started = time.monotonic()
            for _ in range(args.count):
                key = (await a.post("/agent/auth", json=ANONYMOUS)).json()["credential"]
                me = await b.get("/api/me", headers={"Authorization": f"Bearer {key}"})
                if me.status_code != 200:
                    raise RuntimeError(f"B refused a fresh key: {me.status_code}")
                keys.append((key, me.json()["credential_id"]))
            log(
                f"{args.count} keys registered on A and cached on B in "
                f"{time.monotonic() - started:.1f} s"
            )
            feed_ms: list[float] = []
            replica_ms: list[float] = []
            early = missed_feed = missed_replica = 0
            for key, credential_id in keys:
                arrived = arrivals.event(credential_id)
                answer = await a.post(
                    "/admin/revocations", json={"credential_id": credential_id}, headers=admin
                )
                t0 = time.perf_counter()
                if answer.status_code != 200 or answer.json()["revoked"] != 1:
                    raise RuntimeError(f"revocation refused: {answer.status_code} {answer.text}")
                polling = asyncio.create_task(refused_at(b, key))
                try:
                    await asyncio.wait_for(arrived.wait(), WAIT)
                except TimeoutError:
                    missed_feed += 1
                else:
                    at = arrivals.at[credential_id]
                    early += at < t0
                    feed_ms.append(max(0.0, at - t0) * 1000)
                try:
                    replica_ms.append((await asyncio.wait_for(polling, WAIT) - t0) * 1000)
                except TimeoutError:
                    missed_replica += 1
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
    log("")
    log(summary("(a) NATS subscriber holds it", feed_ms))
    log(
        f"    {early} of {len(feed_ms)} were held before A's response arrived (counted as 0); "
        f"{missed_feed} not within {WAIT:.0f} s; subscriber gaps {subscriber.stats.gaps}, "
        f"rejected {subscriber.stats.rejected}"
    )
    log(summary("(b) replica B refuses it", replica_ms))
    log(f"    {missed_replica} not within {WAIT:.0f} s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    add_database_url(parser)
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    args = parser.parse_args()
    admin = await asyncpg.connect(args.database_url)
    name = f"authledger_bench_rev_{secrets.token_hex(4)}"
    log(
        f"machine: {platform.node()}, {os.cpu_count()} CPUs ({cpu_model()}), {memory_total()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    log(
        f"load average at start: {load_average()}; other database sessions: "
        f"{await other_sessions(admin)}"
    )
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        folder = Path(tempfile.mkdtemp(prefix="bench-revocations-"))  # the logs stay
        await measure(args, with_database(args.database_url, name), folder)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(
            f"load average at end: {load_average()}; other database sessions: "
            f"{await other_sessions(admin)}"
        )
        await admin.close()


if __name__ == "__main__":
    import uvloop  # as service.runtime.processes.event_loop_factory picks it

    with asyncio.Runner(loop_factory=uvloop.Loop) as runner:
        runner.run(main())
