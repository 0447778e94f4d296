"""The address card of a running `authledger dev`, so the operator CLI finds its stack.

`dev` writes `<data folder>/stack.json` (mode 0600, replaced atomically) once its servers
answer: its pid, its HTTP URL, the database and NATS URLs it uses (only URLs without a
password, so the embedded ones always) and the files holding the admin token and secret key
it generated (none when the environment gave them). It removes the card when it stops.

Every CLI command but `dev`, `serve` and `worker` reads the card of the data folder
(`AUTHLEDGER_DATA_DIR`, else `./.authledger`) for the variables the environment leaves unset:
an explicit variable always wins. A card whose process is gone, or whose servers do not
answer (a `dev` killed with SIGKILL leaves its card behind), is never used: the CLI says so
in one line and goes on as if there were none.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from service.dev.embedded import process_alive
from service.observability.logging import redact_url

STACK_FILE = "stack.json"
DATA_DIR = "AUTHLEDGER_DATA_DIR"
DEFAULT_DATA_DIR = ".authledger"
# What a card can give, by variable: the words of the one line that says what was used.
GIVES = {
    "AUTHLEDGER_DATABASE_URL": "database",
    "AUTHLEDGER_NATS_URL": "NATS",
    "AUTHLEDGER_PUBLIC_URL": "HTTP URL",
    "AUTHLEDGER_SECRET_KEY": "secret key",
    "AUTHLEDGER_ADMIN_TOKEN": "admin token",
}


@dataclass(frozen=True, slots=True)
class DevStack:
    """What one `dev` process serves on; `None` for what it does not share."""

    pid: int
    http_url: str
    database_url: str | None = None
    nats_url: str | None = None
    admin_token_file: str | None = None
    secret_key_file: str | None = None

    def variables(self) -> dict[str, str]:
        """The `AUTHLEDGER_*` values this stack stands for (secrets read from their files)."""
        found = {
            "AUTHLEDGER_PUBLIC_URL": self.http_url,
            "AUTHLEDGER_DATABASE_URL": self.database_url,
            "AUTHLEDGER_NATS_URL": self.nats_url,
            "AUTHLEDGER_ADMIN_TOKEN": _read_secret(self.admin_token_file),
            "AUTHLEDGER_SECRET_KEY": _read_secret(self.secret_key_file),
        }
        return {name: value for name, value in found.items() if value}

    def stale(self) -> str | None:
        """Why this card cannot be used (its process or a server gone), or None."""
        if not process_alive(self.pid):
            return f"its process {self.pid} is gone"
        for what, url in (("HTTP", self.http_url), ("NATS", self.nats_url)):
            if url and not _tcp_answers(url):
                return f"its {what} server at {url} does not answer"
        if self.database_url and not _postgres_answers(self.database_url):
            return f"its database at {redact_url(self.database_url)} does not answer"
        return None


def data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get(DATA_DIR, "").strip() or DEFAULT_DATA_DIR)


def shareable(url: str) -> str | None:
    """The URL when it carries no password (a card never holds one), else None."""
    return url if url and redact_url(url) == url else None


def write_stack(folder: Path, stack: DevStack) -> Path:
    """Write the card atomically: readers see the old one or the new one, never a part."""
    path = folder / STACK_FILE
    partial = folder / f".{STACK_FILE}.{os.getpid()}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(asdict(stack), out, indent=2)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    return path


def remove_stack(folder: Path, pid: int) -> None:
    """Remove the card if it is still this process's (a later `dev` may have replaced it)."""
    path = folder / STACK_FILE
    found = read_stack(folder)
    if found is not None and found.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_stack(folder: Path) -> DevStack | None:
    """The card in `folder`, or None when there is none (or it cannot be read)."""
    try:
        raw = json.loads((folder / STACK_FILE).read_text(encoding="utf-8"))
        return DevStack(
            pid=int(raw["pid"]),
            http_url=str(raw["http_url"]),
            database_url=_optional(raw.get("database_url")),
            nats_url=_optional(raw.get("nats_url")),
            admin_token_file=_optional(raw.get("admin_token_file")),
            secret_key_file=_optional(raw.get("secret_key_file")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class Found:
    """What the data folder's card gives a command, and the one line to say so."""

    variables: dict[str, str]
    line: str | None


def from_data_dir(env: Mapping[str, str], wanted: Iterable[str]) -> Found:
    """The `wanted` variables the environment leaves unset, from a live card.

    `line` says which were taken (or that a stale card was passed over); None when the card
    gave nothing and there is nothing to say.
    """
    folder = data_dir(env)
    stack = read_stack(folder)
    if stack is None:
        return Found({}, None)
    path = folder / STACK_FILE
    why = stack.stale()
    if why is not None:
        return Found({}, f"authledger: not using the dev stack in {path}: {why} (stale)")
    offered = stack.variables()
    taken = {name: offered[name] for name in wanted if name in offered and name not in env}
    if not taken:
        return Found({}, None)
    words = ", ".join(GIVES[name] for name in GIVES if name in taken)
    return Found(
        taken,
        f"authledger: using the dev stack in {path} (pid {stack.pid}): {words} "
        "(set AUTHLEDGER_* to use others)",
    )


def live_nats_url(env: Mapping[str, str]) -> str | None:
    """The NATS URL of the data folder's live card, read anew (for a subscriber reconnecting)."""
    stack = read_stack(data_dir(env))
    if stack is None or stack.nats_url is None or stack.stale() is not None:
        return None
    return stack.nats_url


def _optional(value: object) -> str | None:
    return str(value) if value else None


def _read_secret(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _tcp_answers(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname or parts.port is None:
        return False
    with socket.socket(socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET) as s:
        s.settimeout(0.5)
        return s.connect_ex((parts.hostname, parts.port)) == 0


def _postgres_answers(url: str) -> bool:
    """A Unix socket (`?host=/dir`) accepts a connection, or a TCP host:port does."""
    parts = urlsplit(url)
    host = (parts.hostname or "") or parse_qs(parts.query).get("host", [""])[0]
    port = parts.port or int(parse_qs(parts.query).get("port", ["5432"])[0])
    if host.startswith("/"):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(0.5)
            return s.connect_ex(f"{host}/.s.PGSQL.{port}") == 0
    return _tcp_answers(f"tcp://{host}:{port}")
