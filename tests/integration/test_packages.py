"""Packages people install (issue 13, item 6), checked without Docker and without downloads.

- The image: the wheel built from exactly the files the Dockerfile's build stage copies
  starts the app, in a venv that holds nothing but that wheel and what it declares.
- The subscriber: its own distribution (subscriber/pyproject.toml) installs alone, with only
  its declared dependencies, runs its CLI, and never imports the service's packages.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from tests.support.packaging import (
    ROOT,
    build_wheel,
    clean_venv,
    closure,
    context_from_dockerfile,
    dockerfile_copies,
    requires,
)

OURS = ("events", "projections", "service", "workers", "migrations")


def _wheel_packages() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages: list[str] = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return packages


def test_the_dockerfile_copies_what_the_wheel_is_made_of() -> None:
    """The build stage copies pyproject.toml, the README it names and every package of the
    wheel, and nothing else."""
    copies = dockerfile_copies((ROOT / "Dockerfile").read_text())
    copied = {source.rstrip("/") for sources, _ in copies for source in sources}
    wanted = {"pyproject.toml", "README.md", *_wheel_packages()}
    assert copied >= wanted, f"the Dockerfile does not copy: {sorted(wanted - copied)}"
    assert copied == wanted, f"the Dockerfile copies more than the wheel: {sorted(copied - wanted)}"


def test_the_image_wheel_starts_the_app(tmp_path: Path) -> None:
    """The wheel built from the Dockerfile's COPY lines imports the app and runs `authledger`."""
    context = tmp_path / "src"
    context_from_dockerfile(ROOT, context)
    wheel = build_wheel(context, tmp_path / "wheels")
    venv = clean_venv(tmp_path / "venv", wheel)
    site = venv.site_packages()
    probe = (
        "import service.http.app, service.cli.main, subscriber, workers.runner; "
        "print(service.http.app.__file__)"
    )
    imported = venv.run([venv.python, "-I", "-c", probe])
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == str(site / "service" / "http" / "app.py")
    helped = venv.run([venv.script("authledger"), "--help"])
    assert helped.returncode == 0, helped.stderr
    for command in ("serve", "worker", "migrate", "replay", "subscribe", "audit"):
        assert command in helped.stdout
    migrations = venv.run([venv.python, "-I", "-c",
        "from migrations.runner import available; print(len(available()))"])  # fmt: skip
    assert migrations.returncode == 0, migrations.stderr
    assert int(migrations.stdout) == len(list((ROOT / "migrations").glob("[0-9]*.sql")))


def test_the_subscriber_installs_alone_and_runs_its_cli(tmp_path: Path) -> None:
    """authledger-subscriber declares nats-py, cryptography, httpx and msgspec; installed
    with those alone it runs `authledger-subscriber --help` and imports none of ours."""
    wheel = build_wheel(ROOT / "subscriber", tmp_path / "wheels")
    declared = {r.split(">")[0].split("[")[0] for r in requires(wheel)}
    assert declared == {"nats-py", "cryptography", "httpx", "msgspec"}
    assert not {"litestar", "asyncpg", "authledger"} & set(closure(requires(wheel)))
    venv = clean_venv(tmp_path / "venv", wheel)
    helped = venv.run([venv.script("authledger-subscriber"), "--help"])
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: authledger-subscriber")
    assert "--from-start" in helped.stdout
    probe = (
        "import sys, subscriber, subscriber.cli, subscriber.client, subscriber.webhook\n"
        "print(subscriber.__file__)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({OURS!r})))\n"
        "import service\n"
    )
    imported = venv.run([venv.python, "-I", "-c", probe])
    lines = imported.stdout.splitlines()
    assert lines[:2] == [str(venv.site_packages() / "subscriber" / "__init__.py"), "[]"]
    assert "ModuleNotFoundError: No module named 'service'" in imported.stderr
    broken = venv.run([venv.python, "-I", "-c", "import litestar"])
    assert "No module named 'litestar'" in broken.stderr  # the service's dependencies are absent


def test_compose_runs_serve_and_worker_from_the_image() -> None:
    """compose.yaml builds the Dockerfile once, as one named image, for every authledger
    service (migrate, serve, worker), and runs the commands the image's entry point takes."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    ours = {
        name: service
        for name, service in compose["services"].items()
        if "build" in service or str(service.get("image", "")).startswith("authledger")
    }
    assert set(ours) == {"migrate", "service", "worker"}
    images = {s["image"] for s in ours.values()}
    assert len(images) == 1
    assert [s["command"][0] for s in ours.values()] == ["migrate", "serve", "worker"]
    assert [s["build"] for s in ours.values()] == [{"context": ".", "dockerfile": "Dockerfile"}] * 3
