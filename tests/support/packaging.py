"""Wheels built and installed offline, for the packaging tests (tests/integration/test_packages.py).

`build_wheel` runs `pip wheel --no-deps --no-build-isolation` with this venv's hatchling (the
dev extra), so nothing is downloaded. `clean_venv` makes a venv from the base interpreter that
holds only the distributions a wheel declares (its `Requires-Dist`, with their own
requirements, extras and markers followed), linked from this venv's site-packages, then
installs the wheel into it: whatever the wheel forgot to ship or to declare is missing there.
Neither this checkout nor the editable install is on its path.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
_COPY = re.compile(r"^COPY\s+(?P<args>.+)$", re.IGNORECASE)


def dockerfile_copies(dockerfile: str) -> list[tuple[list[str], str]]:
    """The build context's COPY lines of the first stage: (sources, destination) each.
    Lines copying from another stage (`--from=`) are not the context's."""
    copies: list[tuple[list[str], str]] = []
    stages = 0
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if line.upper().startswith("FROM "):
            stages += 1
            if stages > 1:
                break
        found = _COPY.match(line)
        if found is None:
            continue
        words = found["args"].split()
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        copies.append((paths[:-1], paths[-1]))
    return copies


def ignored_names(dockerignore: str) -> list[str]:
    """The `**/<name>` patterns of a .dockerignore: names left out at every depth."""
    return [
        line.strip()[3:]
        for line in dockerignore.splitlines()
        if line.strip().startswith("**/") and "/" not in line.strip()[3:]
    ]


def context_from_dockerfile(root: Path, into: Path) -> list[str]:
    """Copy what the Dockerfile's build stage copies from `root` into `into` (its WORKDIR);
    the copied sources, as written."""
    ignore = shutil.ignore_patterns(*ignored_names((root / ".dockerignore").read_text()))
    sources: list[str] = []
    into.mkdir(parents=True, exist_ok=True)
    for paths, destination in dockerfile_copies((root / "Dockerfile").read_text()):
        for source in paths:
            sources.append(source)
            origin = root / source
            target = into / destination
            if destination.endswith("/") or len(paths) > 1:
                target = target / origin.name
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=ignore)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
    return sources


def build_wheel(project: Path, into: Path) -> Path:
    """The wheel of the project at `project`, built offline into `into`."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--wheel-dir", str(into), str(project)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = into.glob("*.whl")
    return wheel


def requires(wheel: Path) -> list[str]:
    """The wheel's `Requires-Dist` lines."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(archive.read(name).decode())
    return message.get_all("Requires-Dist") or []


def closure(requirements: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions `requirements` need, theirs included (markers and extras
    followed as pip would)."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(r), frozenset({""})) for r in requirements]
    while todo:
        requirement, wanted_extras = todo.pop()
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({"extra": e}) for e in wanted_extras):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        dist = found.setdefault(name, metadata.distribution(name))
        extras = frozenset({"", *requirement.extras})
        todo.extend((Requirement(r), extras) for r in dist.requires or [])
    return found


@dataclass(frozen=True)
class Venv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def script(self, name: str) -> Path:
        return self.path / "bin" / name

    def site_packages(self) -> Path:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.path / "lib" / version / "site-packages"

    def run(self, args: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
        """Run in the venv, away from this checkout, with no PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(
            [str(a) for a in args], cwd=self.path, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip


def clean_venv(path: Path, wheel: Path) -> Venv:
    """A venv holding `wheel` and exactly the distributions it declares (see the module)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    venv = Venv(path)
    site = venv.site_packages()
    for dist in closure(requires(wheel)).values():
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            origin, link = Path(str(dist.locate_file(top))), site / top
            if origin.exists() and not link.exists():
                link.symlink_to(origin)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv.python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return venv
