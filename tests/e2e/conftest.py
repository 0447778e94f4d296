"""Every end-to-end test ends with the read models checked against the log: a rebuild from
the events alone must give exactly the live rows (issue 6: "after the end-to-end suites,
`replay --verify` reports no difference")."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from projections.replay import verify


@pytest.fixture(autouse=True)
async def read_models_equal_the_log(owner_database_url: str) -> AsyncIterator[None]:
    """Set up before the test's own fixtures, so it checks after they have all stopped."""
    yield
    report = await verify(owner_database_url)  # a shadow schema: the owner's to make
    assert report.differences == [], "\n".join(d.line() for d in report.differences)
