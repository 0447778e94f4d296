"""Which errors mean "the database does not answer" (503, retry) rather than a bug (500)."""

from __future__ import annotations

import asyncpg
import pytest

from service.http.errors import database_unavailable


async def test_a_refused_connection_raised_inside_asyncpg_is_unavailability() -> None:
    with pytest.raises(ConnectionRefusedError) as refused:
        await asyncpg.connect("postgresql://nobody@127.0.0.1:1/none", timeout=2)
    assert database_unavailable(refused.value)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
        asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
    ],
)
def test_asyncpg_connection_failures_are_unavailability(exc: BaseException) -> None:
    assert database_unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        OSError("a file of ours"),  # not raised inside asyncpg: a bug, not an outage
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.UniqueViolationError("duplicate key"),
        ValueError("anything else"),
    ],
)
def test_other_errors_are_not(exc: BaseException) -> None:
    assert not database_unavailable(exc)
