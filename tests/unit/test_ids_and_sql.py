"""Identifiers and the named-query loader."""

from __future__ import annotations

import time

import pytest

from events.ids import new_event_id, random_token
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
