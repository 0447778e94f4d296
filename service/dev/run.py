"""`authledger dev`: everything in one process, on a data folder that survives restarts.

Embedded Postgres and NATS start under the data folder unless AUTHLEDGER_DATABASE_URL /
AUTHLEDGER_NATS_URL name other ones; then migrations, HTTP and every worker. As in
production, migrations run as the owner role and HTTP and the workers as the runtime role
(docs/security.md, The database roles): on the embedded Postgres the owner is its superuser,
and `authledger_runtime` is made able to log in (trust, over its Unix socket only). An admin token
and a secret key are generated once and kept in the data folder (mode 0600) when the
environment gives none. Webhook pushes and agent providers' JWKS may reach loopback
(AUTHLEDGER_OUTBOUND_ALLOW defaults to 127.0.0.0/8 and ::1 here, so that a subscriber and an
identity provider on this machine work; `serve` and `worker` allow public addresses only);
the banner says what is allowed. Ctrl-C or SIGTERM stops it all, embedded servers included.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import asyncpg
import structlog

from migrations.roles import RUNTIME_ROLE
from service.dev.card import DevStack, remove_stack, shareable, write_stack
from service.dev.embedded import EmbeddedError, EmbeddedStack
from service.dev.mailbox import DevSmtpCatcher, dev_mailbox_router
from service.observability.logging import redact_url
from service.runtime.database_role import url_as
from service.runtime.listening import StartupError, bind_socket, http_url
from service.runtime.loops import (
    migrate_database,
    run_services,
    stop_on_signals,
)
from service.settings import ConfigError, Settings

log = structlog.get_logger("service.dev.run")
ADMIN_TOKEN_FILE = "admin_token"  # noqa: S105 - a file name
SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name


def kept_secret(path: Path, make: Callable[[], str], *, min_length: int) -> str:
    """The secret stored at `path`, made and stored (mode 0600) on first use."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
        value = path.read_text(encoding="utf-8").strip()
        if len(value) < min_length:
            raise ConfigError(f"{path}: must hold at least {min_length} characters") from None
        return value
    value = make()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value + "\n")
    return value


def with_dev_secrets(settings: Settings, data_dir: Path) -> Settings:
    admin_token = settings.admin_token or kept_secret(
        data_dir / ADMIN_TOKEN_FILE, lambda: secrets.token_urlsafe(32), min_length=16
    )
    secret_key = settings.secret_key or kept_secret(
        data_dir / SECRET_KEY_FILE, lambda: secrets.token_urlsafe(48), min_length=32
    )
    return replace(settings, admin_token=admin_token, secret_key=secret_key)


def _outbound(settings: Settings) -> str:
    """The banner's line on where webhooks and JWKS fetches may go (security finding 7)."""
    if not settings.outbound_allow:
        return "public addresses only (AUTHLEDGER_OUTBOUND_ALLOW)"
    allowed = " ".join(settings.outbound_allow)
    return f"public addresses and {allowed}  (AUTHLEDGER_OUTBOUND_ALLOW; for webhooks, JWKS)"


async def runtime_login(superuser_url: str) -> str:
    """The embedded Postgres's URL as the runtime role, which `migrate` created NOLOGIN."""
    conn = await asyncpg.connect(superuser_url)
    try:
        await conn.execute(f"ALTER ROLE {RUNTIME_ROLE} LOGIN")
    finally:
        await conn.close()
    return url_as(superuser_url, RUNTIME_ROLE)


async def run_dev(
    settings: Settings, *, host: str, port: int, public_url_set: bool = False
) -> None:
    """Start embedded services as needed, migrate, serve HTTP and run workers until stopped."""
    started = time.monotonic()
    stop = stop_on_signals()
    sock = bind_socket(host, port)
    url = http_url(host, int(sock.getsockname()[1]))
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    given_admin_token = settings.admin_token is not None
    given_secret_key = settings.secret_key is not None
    settings = with_dev_secrets(settings, data_dir)
    if not public_url_set:
        settings = replace(settings, public_url=url)
    try:
        stack = await EmbeddedStack.start(
            data_dir, postgres=not settings.database_url, nats=not settings.nats_url
        )
    except (EmbeddedError, OSError) as exc:
        sock.close()
        raise StartupError(f"embedded services failed to start: {exc}") from None
    catcher: DevSmtpCatcher | None = None
    try:
        if not settings.smtp_url:  # no SMTP of the user's: catch mail and show it at /dev/mailbox
            catcher = DevSmtpCatcher()
            await catcher.start()
            settings = replace(settings, smtp_url=catcher.url)
        settings = settings.with_services(
            database_url=settings.database_url or (stack.postgres.url if stack.postgres else ""),
            nats_url=settings.nats_url or (stack.nats.url if stack.nats else ""),
        )
        applied = await migrate_database(settings.owner_url, variable=settings.owner_variable)
        if stack.postgres:
            settings = replace(settings, database_url=await runtime_login(stack.postgres.url))
        for migration in applied:
            print(f"applied migration {migration.version:04d}_{migration.name}", flush=True)
        admin = (
            "from AUTHLEDGER_ADMIN_TOKEN"
            if given_admin_token
            else f"kept in {data_dir / ADMIN_TOKEN_FILE}"
        )
        mail = (
            f"mail        {url}/dev/mailbox  (SMTP catcher {catcher.url})"
            if catcher
            else f"smtp        {redact_url(settings.smtp_url or '')}"
        )
        print(
            f"authledger dev: up in {time.monotonic() - started:.1f}s (Ctrl-C to stop)\n"
            f"  http        {url}  (OpenAPI at {url}/schema)\n"
            f"  database    {redact_url(settings.database_url)}"
            f"{'  (embedded; migrated as its superuser)' if stack.postgres else ''}\n"
            f"  nats        {settings.nats_url}{'  (embedded)' if stack.nats else ''}\n"
            f"  admin token {admin}\n"
            f"  outbound    {_outbound(settings)}\n"
            f"  {mail}\n"
            f"  data        {data_dir}",
            flush=True,
        )
        card = DevStack(  # for the operator CLI next to this process (service/dev/card.py)
            pid=os.getpid(),
            http_url=url,
            database_url=shareable(settings.database_url),
            nats_url=shareable(settings.nats_url),
            admin_token_file=None if given_admin_token else str(data_dir / ADMIN_TOKEN_FILE),
            secret_key_file=None if given_secret_key else str(data_dir / SECRET_KEY_FILE),
        )
        write_stack(data_dir, card)
        if not stop.is_set():
            routes = [dev_mailbox_router(catcher.mailbox)] if catcher else []
            await run_services(settings, stop, sock=sock, workers=True, dev_routes=routes)
    finally:
        remove_stack(data_dir, os.getpid())
        sock.close()
        if catcher is not None:
            await catcher.stop()
        await stack.stop()
        log.info("dev.stopped")
        print("authledger dev: stopped", flush=True)
