"""Reading EXPLAIN (ANALYZE, FORMAT JSON) plans in the plan tests."""

from __future__ import annotations

from typing import Any


def rows_read(plan: dict[str, Any]) -> int:
    """Rows every scan node of the plan produced or filtered out, at any depth."""
    own = 0
    if "Scan" in plan["Node Type"]:
        own = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        own += plan.get("Rows Removed by Index Recheck", 0)
    return own + sum(rows_read(child) for child in plan.get("Plans", []))
