"""Named SQL queries kept in `.sql` files under `-- name: <name>` headers, loaded once."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

# A connection of our own or one borrowed from a pool: queries run on either.
Conn: TypeAlias = "asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]"
_HEADER = re.compile(r"^--\s*name:\s*(\S+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} defined twice")
        queries[name] = body.strip()
    return queries


@cache
def load_queries(package: str, filename: str) -> dict[str, str]:
    """The queries of `filename` inside `package`, by name."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return parse_queries(text)
