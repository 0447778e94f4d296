"""The dev stack's card (service/dev/card.py): explicit variables win, a stale card is named
and never used, the card is written whole with mode 0600 and removed only by its writer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.dev.card import (
    STACK_FILE,
    DevStack,
    from_data_dir,
    live_nats_url,
    read_stack,
    remove_stack,
    shareable,
    write_stack,
)

WANTED = ("AUTHLEDGER_DATABASE_URL", "AUTHLEDGER_SECRET_KEY", "AUTHLEDGER_PUBLIC_URL")


@pytest.fixture
def listening() -> Iterator[str]:
    """A loopback TCP server's URL (standing in for dev's HTTP and NATS ports)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return int(child.stdout)


def test_a_live_card_fills_only_what_the_environment_leaves_unset(
    tmp_path: Path, listening: str
) -> None:
    """The card's URL and the secret key from its file; a variable that is set (even to the
    empty string) is the caller's and wins; the line names what was taken."""
    secret = tmp_path / "secret_key"
    secret.write_text("k" * 48 + "\n")
    write_stack(tmp_path, DevStack(pid=os.getpid(), http_url=listening,
                                   secret_key_file=str(secret)))  # fmt: skip
    env = {"AUTHLEDGER_DATA_DIR": str(tmp_path)}
    found = from_data_dir(env, WANTED)
    assert found.variables == {
        "AUTHLEDGER_PUBLIC_URL": listening,
        "AUTHLEDGER_SECRET_KEY": "k" * 48,
    }
    assert found.line is not None
    assert found.line.startswith(f"authledger: using the dev stack in {tmp_path / STACK_FILE}")
    assert "HTTP URL, secret key" in found.line
    assert "k" * 48 not in found.line
    mine = from_data_dir({**env, "AUTHLEDGER_SECRET_KEY": "mine" * 10}, WANTED)
    assert mine.variables == {"AUTHLEDGER_PUBLIC_URL": listening}
    emptied = from_data_dir({**env, "AUTHLEDGER_PUBLIC_URL": ""}, WANTED)
    assert "AUTHLEDGER_PUBLIC_URL" not in emptied.variables


def test_a_card_whose_process_is_gone_is_named_stale_and_not_used(
    tmp_path: Path, listening: str
) -> None:
    """A `dev` killed with SIGKILL leaves its card: the pid is gone, so nothing is taken."""
    pid = dead_pid()
    write_stack(tmp_path, DevStack(pid=pid, http_url=listening, nats_url=listening))
    found = from_data_dir({"AUTHLEDGER_DATA_DIR": str(tmp_path)}, WANTED)
    assert found.variables == {}
    assert found.line == (
        f"authledger: not using the dev stack in {tmp_path / STACK_FILE}: "
        f"its process {pid} is gone (stale)"
    )
    assert live_nats_url({"AUTHLEDGER_DATA_DIR": str(tmp_path)}) is None


def test_a_card_whose_server_does_not_answer_is_stale(tmp_path: Path) -> None:
    """A live pid (reused, or a dev still stopping) is not enough: its servers must answer."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"nats://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening
        write_stack(tmp_path, DevStack(pid=os.getpid(), http_url=url))
        found = from_data_dir({"AUTHLEDGER_DATA_DIR": str(tmp_path)}, WANTED)
    assert found.variables == {}
    assert found.line is not None
    assert found.line.endswith(f"its HTTP server at {url} does not answer (stale)")


def test_no_card_says_nothing(tmp_path: Path) -> None:
    """Without a card (or with an unreadable one) nothing is taken and nothing is said."""
    env = {"AUTHLEDGER_DATA_DIR": str(tmp_path)}
    assert from_data_dir(env, WANTED).line is None
    (tmp_path / STACK_FILE).write_text("{not json")
    assert from_data_dir(env, WANTED) == from_data_dir(
        {"AUTHLEDGER_DATA_DIR": "/nonexistent"}, WANTED
    )


def test_the_card_is_private_whole_and_removed_only_by_its_writer(tmp_path: Path) -> None:
    """Mode 0600, no partial file left behind; another pid's remove leaves it in place."""
    card = DevStack(pid=os.getpid(), http_url="http://127.0.0.1:8000",
                    database_url="postgresql://postgres:@/postgres?host=/tmp/pg")  # fmt: skip
    path = write_stack(tmp_path, card)
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [STACK_FILE]
    assert read_stack(tmp_path) == card
    remove_stack(tmp_path, os.getpid() + 1)
    assert path.exists()
    remove_stack(tmp_path, os.getpid())
    assert not path.exists()


def test_a_url_with_a_password_is_never_written() -> None:
    """The card holds embedded servers' URLs and others only when they carry no password."""
    assert shareable("postgresql://postgres:@/postgres?host=/tmp/pg") is not None
    assert shareable("postgresql://app:s3cret@db:5432/app") is None
    assert shareable("nats://user:pw@127.0.0.1:4222") is None
    assert shareable("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
