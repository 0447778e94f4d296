"""The access line written straight to the stream (service.observability.access_log) reads as
structlog's."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import Literal

import pytest
import structlog
from hypothesis import example, given
from hypothesis import strategies as st

from service.observability import access_log
from service.observability.logging import configure_logging
from service.settings import Settings

FIRST = datetime(1000, 1, 1, tzinfo=UTC).replace(tzinfo=None)
LAST = datetime(9999, 12, 31, tzinfo=UTC).replace(tzinfo=None)


def _settings(level: str, log_format: Literal["console", "json"]) -> Settings:
    return Settings(
        database_url="", nats_url="", secret_key="s" * 40, log_level=level, log_format=log_format
    )


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    yield
    access_log.install(None)
    structlog.reset_defaults()
    logging.getLogger().handlers = []


def test_the_direct_line_has_the_keys_and_shape_structlog_writes() -> None:
    """Same keys, same types, an ISO UTC timestamp ending in Z, one line each."""
    out = io.StringIO()
    configure_logging(_settings("info", "json"), stream=out)
    writer = access_log.installed()
    assert writer is not None
    structlog.get_logger("service.http").info(
        "http.request", method="GET", path="/x", status=200, duration_ms=1.5, request_id="r-1"
    )
    writer.line(method="GET", path="/x", status=200, duration_ms=1.5, request_id="r-1")
    via_structlog, direct = (json.loads(line) for line in out.getvalue().splitlines())
    assert set(direct) == set(via_structlog)
    assert {k: v for k, v in direct.items() if k != "timestamp"} == {
        k: v for k, v in via_structlog.items() if k != "timestamp"
    }
    assert direct["timestamp"].endswith("Z")
    assert datetime.fromisoformat(direct["timestamp"]).utcoffset() is not None


@pytest.mark.parametrize(("level", "log_format"), [("warning", "json"), ("info", "console")])
def test_it_is_not_installed_where_structlog_must_write_the_line(
    level: str, log_format: Literal["console", "json"]
) -> None:
    """Console output and levels above info keep the structlog path (or no line at all)."""
    configure_logging(_settings(level, log_format), stream=io.StringIO())
    assert access_log.installed() is None


@given(st.datetimes(min_value=FIRST, max_value=LAST))  # naive: st.datetimes wants them so
@example(datetime(2026, 12, 7, 4, 30, tzinfo=UTC).replace(tzinfo=None))  # no fraction either way
def test_the_timestamp_is_structlogs_to_the_byte(naive: datetime) -> None:
    """msgspec writes the datetime; structlog's TimeStamper(fmt="iso", utc=True) writes
    `isoformat().replace("+00:00", "Z")`: the same text for any instant."""
    at = naive.replace(tzinfo=UTC)
    rendered = access_log.render(
        method="GET", path="/x", status=200, duration_ms=1.5, request_id="r-1", at=at
    )
    assert rendered.count(b"\n") == 1
    assert rendered.endswith(b"\n")
    assert json.loads(rendered)["timestamp"] == at.isoformat().replace("+00:00", "Z")
