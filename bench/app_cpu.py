"""CPU per request of the app itself: no HTTP server, no network, one process.

    .venv/bin/python bench/app_cpu.py [--seconds S] [--database-url URL]

Creates and migrates a fresh database (the admin URL's user: the guards skip their check),
opens the service's resources as `serve` does (rate limits off), and calls the ASGI app
directly with in-memory request messages, measuring this process's CPU (`time.process_time`)
per request:

a. the static endpoint, `GET /.well-known/oauth-protected-resource`, one caller;
b. `GET /api/me` with one API key, one caller, as served and through Litestar's route;
c. anonymous registrations (`POST /agent/auth`) at 1, 8 and 16 concurrent callers, with the
   batches the store's writer made (group commit: fewer, larger batches at more callers);
d. for comparison, the same at 16 callers through Litestar's route (`hot_paths=False`: what
   every registration paid before service.http.hot_routes), and the command alone
   (`register_anonymous` called directly) at 16 callers;
e. ID-JAG registrations of returning users (ES256, `POST /agent/auth`), and the command alone
   (`register_id_jag`), each at 8 and 16 callers (8: a process's share of 16 connections): a
   test agent provider (tests/support/idp.py) serves its JWKS over HTTP on 127.0.0.1 in this
   process, is trusted through the service's own command, and its SUBJECTS are registered
   once first; the tokens of a run are minted before it (a jti each), so the figure holds the
   server's work only. bench/identity_floor.py's "Python CPU ms" is the same work done by the
   floor, no app around it.

What (c) costs beyond the command is the HTTP layer in our hands: the middlewares, the body
and the answer (and in (d)'s first figure Litestar's routing, guard, injection, Request and
Response). What `bench/write_path.py` measures beyond (c) is the HTTP server, the
event loop under several processes, and the worker. Prints the figures; drops the database.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from scratch_database import add_database_url, with_database
from served import migrate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.commands.context import Caller, Context
from service.commands.identity import register_id_jag
from service.commands.registration import register_anonymous
from service.commands.trust_list import trust
from service.http.app import create_app
from service.observability.logging import configure_logging
from service.runtime.resources import Resources
from service.settings import Settings
from tests.support.idp import IdentityProvider

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
SUBJECTS = 200  # returning users, round-robin
ID_JAG_RATE = 3_000  # tokens minted for each second of a run: more than one process uses
STATIC = "/.well-known/oauth-protected-resource"
REGISTER = b'{"type":"anonymous","requested_credential_type":"api_key"}'
JSON = [(b"content-type", b"application/json")]
HEAD = "SELECT coalesce(max(position), 0) FROM events"
# A batch's events share the writer's recorded_at: registrations per batch since `$1`.
BATCHES = (
    "SELECT count(*) AS registrations, count(DISTINCT recorded_at) AS batches FROM events "
    "WHERE type = 'registration.created' AND position > $1"
)


async def call(
    app: App, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> tuple[int, bytes]:
    """One request through the ASGI app, as a server would hand it over."""
    length = [(b"content-length", str(len(body)).encode())] if body else []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), *headers, *length],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # the client never goes away mid-request here
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(sent[0]["status"]), body_out


async def per_request(
    one: Callable[[], Awaitable[None]], callers: int, seconds: float
) -> tuple[float, float]:
    """(requests/s, µs of this process's CPU per request) with `callers` concurrent loops."""
    done = 0

    async def loop(until: float) -> None:
        nonlocal done
        while time.monotonic() < until:
            await one()
            done += 1

    await asyncio.gather(*(loop(time.monotonic() + 1) for _ in range(callers)))  # warm-up
    done = 0
    cpu, until = time.process_time(), time.monotonic() + seconds
    await asyncio.gather(*(loop(until) for _ in range(callers)))
    return done / seconds, (time.process_time() - cpu) / max(done, 1) * 1e6


async def measure(url: str, seconds: float) -> None:
    env = {
        **os.environ,
        "AUTHLEDGER_DATABASE_URL": url,
        "AUTHLEDGER_NATS_URL": "nats://127.0.0.1:4222",
        "AUTHLEDGER_NATS_STREAM": f"BENCH_APP_{secrets.token_hex(4)}",
        "AUTHLEDGER_SECRET_KEY": secrets.token_urlsafe(48),
        "AUTHLEDGER_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "AUTHLEDGER_RATE_LIMITS": "off",
        "AUTHLEDGER_LOG_LEVEL": "warning",
        # (e): the test provider's keys, fetched over http from 127.0.0.1
        "AUTHLEDGER_JWKS_ALLOW_LOOPBACK_HTTP": "true",
        "AUTHLEDGER_OUTBOUND_ALLOW": "127.0.0.0/8 ::1",
    }
    await migrate(env)
    settings = Settings.from_env(env)
    configure_logging(settings)  # as serve does: warning level, no line per request
    resources = await Resources.open(settings)
    try:
        app: App = create_app(settings, resources=resources)  # type: ignore[assignment]
        status, body = await call(app, "POST", "/agent/auth", JSON, REGISTER)
        if status != 200:
            raise RuntimeError(f"a registration answered {status}: {body[:300]!r}")
        bearer = [(b"authorization", b"Bearer " + msgspec.json.decode(body)["credential"].encode())]

        framework: App = create_app(settings, resources=resources, hot_paths=False)  # type: ignore[assignment]

        async def get(path: str, headers: list[tuple[bytes, bytes]], through: App = app) -> None:
            if (await call(through, "GET", path, headers))[0] != 200:
                raise RuntimeError(f"GET {path} did not answer 200")

        async def post(through: App = app) -> None:
            if (await call(through, "POST", "/agent/auth", JSON, REGISTER))[0] != 200:
                raise RuntimeError("a registration did not answer 200")

        ctx = resources.commands
        if ctx is None:
            raise RuntimeError("no command context (a secret key is set above)")

        async def command() -> None:
            await register_anonymous(ctx, "api_key", Caller(client_ip="127.0.0.1"))

        rate, cpu = await per_request(lambda: get(STATIC, []), 1, seconds)
        print(f"static, 1 caller:                {rate:8,.0f}/s {cpu:6.0f} µs CPU a request")
        rate, cpu = await per_request(lambda: get("/api/me", bearer), 1, seconds)
        print(f"/api/me, 1 caller:               {rate:8,.0f}/s {cpu:6.0f} µs CPU a request")
        rate, cpu = await per_request(lambda: get("/api/me", bearer, framework), 1, seconds)
        print(f"/api/me, the framework's route:  {rate:8,.0f}/s {cpu:6.0f} µs CPU a request")
        for callers in (1, 8, 16):
            head = int(await resources.pool.fetchval(HEAD))
            rate, cpu = await per_request(post, callers, seconds)
            row = await resources.pool.fetchrow(BATCHES, head)
            if row is None:
                raise RuntimeError("no count of the batches")
            print(
                f"registration, {callers:2} caller(s):      {rate:8,.0f}/s {cpu:6.0f} µs CPU "
                f"a request; {row['registrations'] / max(row['batches'], 1):.1f} a batch"
            )
        rate, cpu = await per_request(lambda: post(framework), 16, seconds)
        print(f"the framework's route, 16 callers: {rate:6,.0f}/s {cpu:6.0f} µs CPU a request")
        rate, cpu = await per_request(command, 16, seconds)
        print(f"the command alone, 16 callers:   {rate:8,.0f}/s {cpu:6.0f} µs CPU a request")
        await measure_id_jag(app, ctx, seconds)
    finally:
        await resources.close()


async def measure_id_jag(app: App, ctx: Context, seconds: float) -> None:
    """(e): ID-JAG registrations of returning users, through the app and the command alone."""
    async with IdentityProvider(alg="ES256") as idp:
        await trust(ctx, idp.trusted(algorithms=("ES256",)), Caller(actor="cli:bench"))
        audience = ctx.tenant.issuer

        def minted(count: int) -> list[str]:
            now = datetime.now(UTC)
            return [
                idp.mint_id_jag(aud=audience, now=now, sub=f"agent-{i % SUBJECTS:04d}")
                for i in range(count)
            ]

        for token in minted(SUBJECTS):  # each subject once: the runs are returning users
            await register_id_jag(ctx, token, "api_key", Caller(client_ip="127.0.0.1"))
        # a run's tokens (and its warm-up's) before it, so that minting is not counted
        enough = int(ID_JAG_RATE * (seconds + 1))

        def take(tokens: list[str]) -> str:
            if not tokens:
                raise RuntimeError("the run's tokens ran out: raise ID_JAG_RATE")
            return tokens.pop()

        async def through_app(tokens: list[str]) -> None:
            body = msgspec.json.encode(
                {"type": "identity_assertion", "assertion_type": ID_JAG,
                 "assertion": take(tokens), "requested_credential_type": "api_key"}
            )  # fmt: skip
            status, answer = await call(app, "POST", "/agent/auth", JSON, body)
            if status != 200:
                raise RuntimeError(f"an ID-JAG registration answered {status}: {answer[:300]!r}")

        async def alone(tokens: list[str]) -> None:
            await register_id_jag(ctx, take(tokens), "api_key", Caller(client_ip="127.0.0.1"))

        runs: list[tuple[str, Callable[[list[str]], Awaitable[None]]]] = [
            ("ID-JAG registration", through_app),
            ("the ID-JAG command", alone),
        ]
        for callers in (8, 16):
            for label, way in runs:
                tokens = minted(enough)
                rate, cpu = await per_request(functools.partial(way, tokens), callers, seconds)
                print(
                    f"{f'{label}, {callers:2} callers:':33}{rate:8,.0f}/s {cpu:6.0f} µs CPU "
                    "a request"
                )


async def run(args: argparse.Namespace) -> None:
    name = f"authledger_bench_app_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(args.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await measure(with_database(args.database_url, name), args.seconds)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_database_url(parser)
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
