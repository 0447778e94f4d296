"""Pieces of the generated auth.md (service/http/authmd.py, authmd_v06.py): JSON examples,
lists of codes and example instants on a fixed clock, so one configuration always renders
the same bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

EXAMPLE_NOW = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)


def json_block(document: Any) -> str:
    """A fenced JSON block, indented, keys in the order given."""
    return "```json\n" + json.dumps(document, indent=2, ensure_ascii=False) + "\n```"


def codes(names: tuple[str, ...]) -> str:
    """`a`, `b`, or `none`."""
    return ", ".join(f"`{name}`" for name in names) or "none"


def example_time(seconds: int) -> str:
    """The example clock `seconds` later, as the service writes times."""
    return (EXAMPLE_NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
