"""The README's layout ("How it works", "Layout") names every package of the repository, one
line each, and every package it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRY = re.compile(r"^(?P<indent> *)- `(?P<path>[\w/]+)/` — \S")


def layout() -> list[tuple[int, str]]:
    """(indent, path) of each entry of the README's layout list, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n### Layout\n", 1)[1].splitlines()
    first = next(n for n, line in enumerate(section) if line.startswith("- "))
    entries = []
    for line in section[first:]:
        if not line.strip():  # the list ends at the first blank line
            break
        match = ENTRY.match(line)
        assert match, f"not a layout entry of one line: {line!r}"
        entries.append((len(match["indent"]), match["path"]))
    return entries


def packages_on_disk() -> set[str]:
    found = set()
    for init in ROOT.rglob("__init__.py"):
        parts = init.relative_to(ROOT).parent.parts
        if parts and not any(p.startswith(".") or p in {"build", "dist"} for p in parts):
            found.add("/".join(parts))
    return found


def test_every_named_package_exists() -> None:
    for _, path in layout():
        assert (ROOT / path / "__init__.py").is_file(), f"the README names {path}/: no such package"


def test_every_package_is_named_once() -> None:
    named = [path for _, path in layout()]
    assert len(named) == len(set(named)), "a package is named twice"
    missing = packages_on_disk() - set(named)
    assert not missing, f"packages the README's layout does not name: {sorted(missing)}"


def test_sub_packages_sit_under_their_parent() -> None:
    parents: list[str] = []
    for indent, path in layout():
        depth = indent // 2
        assert depth <= len(parents), f"{path}/ is indented deeper than its parent"
        del parents[depth:]
        parent, _, name = path.rpartition("/")
        assert parent == "/".join(parents), f"{path}/ is not listed under {parent or 'the top'}"
        parents.append(name)
