"""`make test` says which Postgres and NATS it uses: the backend choice and pytest's header."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.backends import describe_backend, select_backend

ROOT = Path(__file__).resolve().parents[2]
ENV_URLS = {
    "AUTHLEDGER_TEST_DATABASE_URL": "postgresql://app:hunter2@db.internal:5432/postgres",
    "AUTHLEDGER_TEST_NATS_URL": "nats://bus:s3cret@nats.internal:4222",
}


def test_a_forced_backend_wins_and_a_bad_one_names_the_choices() -> None:
    """AUTHLEDGER_TEST_BACKEND is taken as given; an unknown value lists the four kinds."""
    assert select_backend({**ENV_URLS, "AUTHLEDGER_TEST_BACKEND": "embedded"}) == "embedded"
    assert select_backend(ENV_URLS) == "env"
    with pytest.raises(RuntimeError, match="one of env, local, containers, embedded"):
        select_backend({"AUTHLEDGER_TEST_BACKEND": "docker"})


def test_the_description_names_both_addresses_without_passwords() -> None:
    """The env backend's line names its URLs with the passwords masked."""
    line = describe_backend("env", ENV_URLS)
    assert line == (
        "authledger backend: env, Postgres postgresql://app:[redacted]@db.internal:5432/postgres,"
        " NATS nats://bus:[redacted]@nats.internal:4222"
    )


def _header(env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUTHLEDGER_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider",
         "tests/unit/test_catalogue.py"],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_pytest_header_names_the_backend_and_its_addresses() -> None:
    """A pytest run prints the chosen backend and where it is, and never a password."""
    out = _header({**ENV_URLS, "AUTHLEDGER_TEST_BACKEND": "env"})
    assert describe_backend("env", ENV_URLS) in out.splitlines()
    assert "hunter2" not in out
    assert "s3cret" not in out


def test_pytest_header_does_not_start_embedded_servers(tmp_path: Path) -> None:
    """The header names the embedded backend without starting it: no data folder, no address."""
    lines = _header({"AUTHLEDGER_TEST_BACKEND": "embedded", "TMPDIR": str(tmp_path)}).splitlines()
    assert describe_backend("embedded") in lines
    assert not [line for line in lines if line.startswith("authledger backend: embedded, ")]
    assert not list(tmp_path.glob("authledger-test-*"))
