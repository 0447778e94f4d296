"""What a bench prints: progress lines on stderr, and the rows of its Markdown tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cells(values: Sequence[str]) -> str:
    """One row of a Markdown table."""
    return "| " + " | ".join(values) + " |"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
