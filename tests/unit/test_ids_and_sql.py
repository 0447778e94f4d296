"""Identifiers and the named-query loader."""

from __future__ import annotations

import base64
import time

import pytest

from events.ids import new_event_id, random_token, time_ordered_token
from events.sql import load_queries, parse_queries


def test_event_ids_are_uuid7_and_sort_by_time() -> None:
    """Event ids carry version 7, the RFC variant, and increase with the millisecond."""
    first = new_event_id()
    time.sleep(0.002)  # the behaviour under test: a later millisecond sorts later
    second = new_event_id()
    assert first.version == 7
    assert first.variant == "specified in RFC 4122"
    assert first < second
    assert len({new_event_id() for _ in range(10_000)}) == 10_000


def test_random_tokens_have_prefix_and_length() -> None:
    """`clm_` + 26 base64url characters from 19 random bytes, as the spec formats them."""
    token = random_token("clm_", 19)
    assert token.startswith("clm_")
    assert len(token) == 4 + 26
    assert random_token("clm_", 19) != token


def _millis(token: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(token.removeprefix("cred_") + "==")[:6], "big")


def test_time_ordered_tokens_begin_with_their_millisecond() -> None:
    """`cred_` + 22 base64url characters, as a 16-byte random token; the first 6 bytes the
    Unix millisecond it was made in, so tokens of the same seconds share their first
    characters (an index's new rows land together); the rest differs every time."""
    before = time.time_ns() // 1_000_000
    token = time_ordered_token("cred_")
    after = time.time_ns() // 1_000_000
    assert len(token) == len(random_token("cred_", 16)) == 5 + 22
    assert before <= _millis(token) <= after
    burst = [time_ordered_token("cred_") for _ in range(10_000)]
    assert len(set(burst)) == len(burst)
    assert [_millis(t) for t in burst] == sorted(_millis(t) for t in burst)
    assert len({t[:11] for t in burst}) <= 2  # 6 characters: a 4-second window, or two


def test_parse_queries_splits_on_name_headers() -> None:
    """Each `-- name:` header starts a query; duplicates are refused."""
    text = "-- name: a\nSELECT 1\n\n-- name: b\nSELECT 2;\n"
    assert parse_queries(text) == {"a": "SELECT 1", "b": "SELECT 2;"}
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2")


def test_store_queries_load() -> None:
    """The store's SQL file parses and names the queries the store uses."""
    queries = load_queries("events", "store.sql")
    assert {"lock", "head", "insert", "read_all", "read_stream", "notify"} <= set(queries)
