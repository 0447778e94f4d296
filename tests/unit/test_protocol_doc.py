"""Every spec tag the code uses is defined in docs/protocol.md.

Tags, as the code writes them: E1-E10 (endpoints), R1-R8 (a registration's transitions),
O1-O20 (decisions), W1-W17 (upstream weaknesses), and `§n` / `§n.m` (sections of the page).
A `§` right after an RFC number (`RFC 8935 §2.3`, also across a line break or a comment
marker) is that RFC's section and not a tag; so is one right after `contract` (the v0.6
contract, ../shared/spec/auth-md-v06.md) or `v06-dialect.md` (its design page).
docs/protocol.md defines a tag by a heading that starts with it (`### E4 — register`,
`## §6.4 Wrong codes`) or by a list item that starts with it in bold (`- **R3** …`).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
CODE = ("events", "projections", "service", "workers", "subscriber", "migrations", "bench", "tests")
SUFFIXES = {".py", ".sql", ".lua", ".toml", ".html", ".txt", ".md"}

LETTER_TAG = re.compile(r"(?<![\w\-.])[EROW](?:[1-9]|1[0-9]|20)(?![\w\-])")
SECTION_TAG = re.compile(r"§(\d+(?:\.\d+)*)")
# What stands before another document's section sign: "RFC 7662 ", "RFC\n    # 8935 ",
# "7662 ", "contract ", "docs/design/v06-dialect.md ".
RFC_BEFORE = re.compile(r"(?:(?:RFC\s*)?\d{3,5}|contract|v06 dialect\.md)\s*$")  # "-" read as " "
DEFINING_HEADING = re.compile(r"^#{1,6} ([EROW]\d{1,2}|§\d+(?:\.\d+)*)(?=[\s—:-]|$)", re.M)
DEFINING_ITEM = re.compile(r"^- \*\*([EROW]\d{1,2}|§\d+(?:\.\d+)*)\*\*", re.M)


def code_files() -> list[Path]:
    me = Path(__file__).resolve()
    return sorted(
        path
        for top in CODE
        for path in (ROOT / top).rglob("*")
        if path.is_file()
        and path.suffix in SUFFIXES
        and path.resolve() != me
        and ".venv" not in path.parts
        and "__pycache__" not in path.parts
    )


def tags_in(text: str) -> set[str]:
    found = set(LETTER_TAG.findall(text))
    for match in SECTION_TAG.finditer(text):
        before = re.sub(r"[\s#\-\"']+", " ", text[max(0, match.start() - 40) : match.start()])
        if not RFC_BEFORE.search(before):
            found.add("§" + match.group(1))
    return found


def used_tags() -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for path in code_files():
        for tag in tags_in(path.read_text(encoding="utf-8", errors="replace")):
            used.setdefault(tag, []).append(str(path.relative_to(ROOT)))
    return used


def defined_tags() -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    return set(DEFINING_HEADING.findall(text)) | set(DEFINING_ITEM.findall(text))


def test_the_tag_grammar_reads_what_the_code_writes() -> None:
    assert tags_in("E5 (spec §6.1 R3/R4, O4, O6)") == {"E5", "§6.1", "R3", "R4", "O4", "O6"}
    assert tags_in("spec §10 W15.") == {"§10", "W15"}
    # RFC sections, HTTP statuses, algorithms, ruff codes and hashes are not tags.
    assert tags_in("RFC 8935 §2.3, RFC\n    # 7662 §2.1, RFC 6749\n    §2.3.1") == set()
    assert tags_in("(contract §4), docs/design/v06-dialect.md §10.2, spec §12") == {"§12"}
    assert tags_in("ES256 S256 E501 W605 404 HH24 T0 sha256:E4f a-E4 R2D2 O20x") == set()


def test_the_code_uses_tags() -> None:
    used = used_tags()
    assert {"E4", "E8", "R7", "O19", "W12", "§6.4", "§10"} <= used.keys()


def test_every_tag_in_the_code_is_defined_in_docs_protocol() -> None:
    defined = defined_tags()
    missing = {tag: where[:3] for tag, where in used_tags().items() if tag not in defined}
    assert not missing, f"tags used in the code but not defined in docs/protocol.md: {missing}"


def test_each_definition_says_something() -> None:
    """A bold item has text after it; a heading has text before the next heading of its level
    or a higher one (its sub-sections count)."""
    text = DOC.read_text(encoding="utf-8")
    for match in DEFINING_ITEM.finditer(text):
        rest = text[match.end() : text.find("\n", match.end())].strip()
        assert len(rest) > 10, f"{match.group(1)} has no definition"
    for match in DEFINING_HEADING.finditer(text):
        level = len(match.group(0)) - len(match.group(0).lstrip("#"))
        below = re.split(rf"^#{{1,{level}}} ", text[match.end() :], maxsplit=1, flags=re.M)[0]
        assert len(below.split()) > 5, f"{match.group(1)} has no text under its heading"
