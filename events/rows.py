"""Many rows of one statement in one execution.

A batch's rows of one INSERT (a projection's, a new subject's key) used to go with
`executemany`: one round trip, but one execution per row in Postgres (bind, plan, executor
start and end each time). A row statement that has a column form goes in one execution: the
form takes one array per argument of the row statement and `unnest`s them (issue 11, "one
statement per table per batch"; docs/benchmarks.md, session 14). The form is registered beside
its row statement, by the module that owns both (`column_form`), and `at_once` picks it for
two rows or more: the projections' planner before the transaction (projections.runner.plan),
`send_rows` for the writes sent as they come. The rows written are the same either way; a
test holds the two forms to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from events.sql import Conn


@dataclass(frozen=True, slots=True)
class ColumnForm:
    """`sql` takes, for each argument of the row statement, the array of its values.

    `joined`: the positions of arguments that hold a list of texts per row (a `text[]` column).
    Postgres's arrays of arrays must be rectangular, so each such list goes as one space-joined
    text, which `sql` splits again (`string_to_array(x, ' ')`). A list that would not survive
    that (a text with a space, or an empty text) makes the rows go row by row."""

    sql: str
    joined: tuple[int, ...] = ()

    def columns(self, rows: Sequence[tuple[Any, ...]]) -> tuple[list[Any], ...] | None:
        cols = [list(column) for column in zip(*rows, strict=True)]
        for index in self.joined:
            texts = []
            for values in cols[index]:
                if any(not value or " " in value for value in values):
                    return None
                texts.append(" ".join(values))
            cols[index] = texts
        return tuple(cols)


_FORMS: dict[str, ColumnForm] = {}


def column_form(row_sql: str, form: ColumnForm) -> None:
    """Register `form` as `row_sql`'s (at import, by the module that owns both)."""
    _FORMS[row_sql] = form


def form_of(row_sql: str) -> ColumnForm | None:
    return _FORMS.get(row_sql)


def at_once(sql: str, rows: Sequence[tuple[Any, ...]]) -> tuple[str, list[tuple[Any, ...]]]:
    """The statement and argument lists that write `rows` of `sql`: its column form with one
    argument list (the columns) when it has one and there are two rows or more, else `sql`
    with `rows`. Pure, so a planner can do it before the transaction."""
    form = form_of(sql) if len(rows) > 1 else None
    columns = form.columns(rows) if form is not None else None
    if form is None or columns is None:
        return sql, list(rows)
    return form.sql, [columns]


async def send(conn: Conn, sql: str, many: Sequence[tuple[Any, ...]]) -> None:
    """`execute` for one argument list, `executemany` (one round trip) for more."""
    if len(many) == 1:
        await conn.execute(sql, *many[0])
    else:
        await conn.executemany(sql, many)


async def send_rows(conn: Conn, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`rows` of `sql`, in one execution when its column form takes them (`at_once`)."""
    await send(conn, *at_once(sql, rows))
