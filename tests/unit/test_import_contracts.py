"""The import contracts (pyproject.toml, [tool.importlinter]) hold on the tree, and a back-edge
breaks them: the packages are copied to a temporary folder, one import is added to the copy,
and `lint-imports` runs on the copy alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("events", "migrations", "projections", "service", "workers", "subscriber")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", folder)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return folder


def lint_imports(folder: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on `folder`'s packages, never on the installed ones."""
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def add_import(module: Path, line: str) -> str:
    """Append `line` to `module`, returning the module's text before."""
    before = module.read_text()
    module.write_text(f"{before}\n{line}\n")
    return before


def test_the_tree_keeps_every_contract(copy: Path) -> None:
    result = lint_imports(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken", "edge"),
    [
        (  # the service below the workers
            "service/settings.py",
            "from workers import relay",
            "workers > service > projections > migrations > events BROKEN",
            "service.settings -> workers.relay",
        ),
        (  # the read models below the service
            "projections/users.py",
            "import service.settings",
            "workers > service > projections > migrations > events BROKEN",
            "projections.users -> service.settings",
        ),
        (  # the sign-in helpers know no routes
            "service/signin/csrf.py",
            "import service.http.answers",
            "service.signin (sessions, CSRF, OIDC sign-in) knows no routes and no workers BROKEN",
            "service.signin.csrf -> service.http.answers",
        ),
        (  # the subscriber stands alone
            "subscriber/wire.py",
            "import events.ids",
            "subscriber imports nothing of ours",
            "subscriber.wire -> events.ids",
        ),
    ],
)
def test_a_back_edge_breaks_the_contracts(
    copy: Path, module: str, line: str, broken: str, edge: str
) -> None:
    before = add_import(copy / module, line)
    try:
        result = lint_imports(copy)
    finally:
        (copy / module).write_text(before)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout
    assert edge in result.stdout
