"""Applying many events' statements fast, in an order equivalent to the log's.

Every projection statement touches only the rows of its own event's stream (a registration's
row and its attempts' `attempt_addresses` rows, a credential's, a user's, an issuer's, a
delegation's). So two statements of different streams commute, and only each stream's own
statements must keep their order. A batch is cut into layers: layer k holds the k-th
statement of every stream in the batch. Within a layer no two statements touch the same row,
so its statements are grouped by SQL text and sent once per group (in one execution where
the statement has a column form, events.rows, else with `executemany`: one pipelined round
trip) instead of one round trip per event; the layers run in order. That a layer touches a
row at most once is also what lets a column form be an `UPDATE … FROM unnest(…)`. The result is
the row set the one-by-one run gives.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from events.appends import Layers
from events.envelope import RecordedEvent

Statement = tuple[str, tuple[object, ...]]
StatementsOf = Callable[[Sequence[RecordedEvent]], list[Statement]]


def layers(events: Sequence[RecordedEvent], statements_of: StatementsOf) -> Layers:
    """Per layer, the argument lists of each SQL text, in first-seen order."""
    depth: dict[tuple[str, str], int] = defaultdict(int)
    out: Layers = []
    for recorded in events:
        for sql, args in statements_of((recorded,)):
            key = (recorded.tenant_id, recorded.stream_id)
            layer = depth[key]
            depth[key] = layer + 1
            if layer == len(out):
                out.append({})
            out[layer].setdefault(sql, []).append(args)
    return out
