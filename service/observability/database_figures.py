"""What /metrics reads from Postgres when scraped, the same in every process, so any one
may answer: `authledger_log_head_position`, `authledger_relay_lag_events` (head minus the
relay's checkpoint), `authledger_expiry_lag_seconds` (now minus the oldest deadline the expiry
worker has not recorded, the worker's own query), `authledger_push_deliveries_total{outcome}`
(`delivered`, `failed`, `dead_lettered`), and `authledger_database_up`. The process's own
counters are service.observability.metrics's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from events.clock import Clock
from events.sql import load_queries
from projections.deadlines import next_deadline

Q = load_queries("service.observability", "database_figures.sql")
log = structlog.get_logger("service.observability.metrics")  # the metrics' own log, as before


@dataclass
class DatabaseFigures:
    """The figures of the last scrape that came from Postgres."""

    up: bool = False
    head: int = 0
    relay_lag: int = 0
    expiry_lag: float = 0.0
    push: dict[str, int] = field(default_factory=dict)


class DatabaseCollector(Collector):
    """Exposes the figures of the last read (prometheus-client calls `collect` on a scrape)."""

    def __init__(self, figures: DatabaseFigures) -> None:
        self._figures = figures

    def collect(self) -> Iterable[Metric]:
        s = self._figures
        yield GaugeMetricFamily(
            "authledger_database_up", "1 when the last scrape could read Postgres", s.up
        )
        if not s.up:
            return
        yield GaugeMetricFamily(
            "authledger_log_head_position", "Position of the last event in the log", s.head
        )
        yield GaugeMetricFamily(
            "authledger_relay_lag_events",
            "Events in the log the relay has not yet published to JetStream",
            s.relay_lag,
        )
        yield GaugeMetricFamily(
            "authledger_expiry_lag_seconds",
            "Now minus the oldest deadline the expiry worker has not recorded (0 if none)",
            s.expiry_lag,
        )
        push = CounterMetricFamily(
            "authledger_push_deliveries",
            "Webhook deliveries of revocations, by outcome",
            labels=["outcome"],
        )
        for outcome, count in s.push.items():
            push.add_metric([outcome], count)
        yield push


async def read_figures(
    pool: asyncpg.Pool,
    figures: DatabaseFigures,
    *,
    relay_checkpoint: str,
    tenant_id: str,
    clock: Clock,
) -> bool:
    """Read the figures into `figures` (one query, then the expiry worker's own); False
    (and `figures.up` False) when Postgres cannot be read."""
    try:
        async with asyncio.timeout(5), pool.acquire() as conn:
            row = await conn.fetchrow(Q["scrape"], relay_checkpoint, tenant_id)
            deadline = await next_deadline(conn)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("metrics.database_unavailable", error=type(exc).__name__)
        figures.up = False
        return False
    if row is None:  # aggregates always answer one row
        raise RuntimeError("the scrape query answered no row")
    figures.up, figures.head = True, int(row["head"])
    figures.relay_lag = max(figures.head - int(row["relay_checkpoint"] or 0), 0)
    now = clock.now()
    figures.expiry_lag = max((now - deadline).total_seconds(), 0.0) if deadline else 0.0
    figures.push = {
        "delivered": int(row["push_delivered"]),
        "failed": int(row["push_failed"]),
        "dead_lettered": int(row["push_dead_lettered"]),
    }
    return True
