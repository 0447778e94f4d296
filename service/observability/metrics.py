"""Prometheus metrics: what this process counts, and what any process reads from Postgres.

Counted by the serving process (prometheus-client objects, in this object's own registry):

- `authledger_http_requests_total{method, route, status}` and
  `authledger_http_request_duration_seconds{method, route}` (histogram), by route template
  (`/admin/subscriptions/{subscription_id}`), never the raw path: no token in a label;
  requests no route matched (404, 405) are `route="unmatched"`;
- `authledger_http_refusals_total{route, error}`: every refusal by its error code;
- `authledger_registrations_total{outcome}` (E4): `anonymous`, `verified_email`, `id_jag`, or
  the refusal's error code; `authledger_claims_total{step, outcome}`: `start` (E5), `code`
  (E7), `complete` (E8), each `ok` or the error code;
- `authledger_events_appended_total{type}`: the events this process's commands appended
  (through `Context.on_recorded`); workers' appends show in the figures read from Postgres;
- `authledger_rate_limit_checks_total{result}` (service.ratelimit): `admitted`,
  `refused.<limit>` (e.g. `refused.anonymous_per_ip`) or `store_failed`;
- `authledger_outbound_refused_total{purpose, reason}` (service.outbound): connections to
  an agent provider's JWKS (`purpose="jwks"`) refused because the host resolved to an
  address that is not public (`reason`: `loopback`, `private`, `metadata`, ...); webhook
  refusals, made by the worker, count as failed deliveries (below);
- `authledger_credential_cache_lookups_total{result}` (`hit`, `negative_hit`, `miss`),
  `authledger_credential_cache_hit_ratio`, `authledger_credential_cache_entries`, and
  `authledger_projection_lag_events{projection="credential_cache"}`: the log's head minus the
  position the cache's feed has applied (0 while the feed is not live: the cache then serves
  nothing from memory). The read models themselves are projected inline, in the append's
  transaction: `projection="inline"` is 0 by construction.

Read from Postgres when scraped, the same in every process: the log's head, the relay's and
the expiry worker's lag, the webhook deliveries, whether Postgres answered
(service.observability.database_figures). What a request did, which labels its counters, is
collected by service.observability.request_outcome.

Several processes (`serve --workers N` shares one socket, so a scrape reaches any child):
prometheus-client's multiprocess mode. The parent points `PROMETHEUS_MULTIPROC_DIR` at a fresh
folder before it spawns the children; each child's counters and histograms live in files there
and whichever child answers sums them all. Per-process gauges (cache entries, hit ratio, feed
lag) are kept per live child (`pid` label, or the worst child for the lag), refreshed by each
child every few seconds (`run_refresher`), as a child that is never scraped must still report.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from contextlib import suppress

import asyncpg
import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from events.clock import Clock, SystemClock
from events.envelope import RecordedEvent
from events.sql import load_queries
from service.caches.credentials import CredentialCache
from service.observability.database_figures import DatabaseCollector, DatabaseFigures, read_figures
from service.observability.request_outcome import RequestOutcome, current_outcome
from service.runtime.listening import MULTIPROC_ENV
from service.tenancy.config import CLAIM_PATH, REGISTER_PATH

Q = load_queries("service.observability", "metrics.sql")
log = structlog.get_logger("service.observability.metrics")
UNMATCHED = "unmatched"
# The methods a label names; any other (a client may send any token) counts as OTHER, so a
# stranger cannot grow the label sets, or the children kept for them, without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
REFRESH_EVERY = 5.0  # seconds, per child in multiprocess mode
_STEPS = {
    ("POST", CLAIM_PATH): "start",
    ("POST", CLAIM_PATH + "/attempt/challenge"): "code",
    ("POST", CLAIM_PATH + "/complete"): "complete",
}
# What a successful E4 appended says about its flow (the first type found wins).
_FLOWS = (
    ("delegation.used", "id_jag"),
    ("claim.attempt_started", "verified_email"),
    ("registration.created", "anonymous"),
)


class Metrics:
    """One process's metrics. `multiprocess_dir`: prometheus-client's multiprocess folder
    (see the module docstring), None for a process that serves alone."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache: CredentialCache | None,
        *,
        relay_checkpoint: str,
        tenant_id: str,
        clock: Clock | None = None,
        multiprocess_dir: str | None = None,
    ) -> None:
        self._pool, self._cache, self._clock = pool, cache, clock or SystemClock()
        self._relay_checkpoint, self._tenant_id = relay_checkpoint, tenant_id
        self.multiprocess_dir = multiprocess_dir
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` twins
        own = CollectorRegistry()
        if multiprocess_dir is None:
            self.registry = own
        else:  # the metric objects write files; whoever answers a scrape reads them all
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        self._figures = DatabaseFigures()
        self.registry.register(DatabaseCollector(self._figures))
        self.requests = Counter(
            "authledger_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "authledger_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["method", "route"],
            registry=own,
        )
        self.refusals = Counter(
            "authledger_http_refusals",
            "Requests refused, by route template and error code",
            ["route", "error"],
            registry=own,
        )
        self.registrations = Counter(
            "authledger_registrations",
            "E4 registrations: the flow that succeeded, or the refusal's error code",
            ["outcome"],
            registry=own,
        )
        self.claims = Counter(
            "authledger_claims",
            "Claim ceremony steps (start E5, code E7, complete E8): ok or the error code",
            ["step", "outcome"],
            registry=own,
        )
        self.rate_limits = Counter(
            "authledger_rate_limit_checks",
            "Rate-limit checks: admitted, refused.<limit>, or store_failed (then fail policy)",
            ["result"],
            registry=own,
        )
        self.outbound_refused = Counter(
            "authledger_outbound_refused",
            "Outbound connections refused (security finding 7), by purpose and address class",
            ["purpose", "reason"],
            registry=own,
        )
        self.appended = Counter(
            "authledger_events_appended",
            "Events this process's commands appended, by type",
            ["type"],
            registry=own,
        )
        self.lookups = Counter(
            "authledger_credential_cache_lookups",
            "Bearer credential checks, by how the cache answered",
            ["result"],
            registry=own,
        )
        self.hit_ratio = Gauge(
            "authledger_credential_cache_hit_ratio",
            "Share of bearer checks answered from memory since the process started",
            registry=own,
            multiprocess_mode="liveall",
        )
        self.entries = Gauge(
            "authledger_credential_cache_entries",
            "Credentials held in memory",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.feed_lag = Gauge(
            "authledger_projection_lag_events",
            "Events in the log a process's in-memory projection has not applied",
            ["projection"],
            registry=own,
            multiprocess_mode="livemax",
        )
        self.feed_lag.labels("inline").set(0)  # projected in the append's own transaction
        self._seen = {"hit": 0, "negative_hit": 0, "miss": 0}
        # (method, route template, status) -> its request counter and latency histogram: few
        # keys, since routes are templates and unmatched paths share one label
        self._per_request: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        # (counter, label values) -> its child: event types, routes, error codes, flows and
        # steps are few
        self._children: dict[tuple[Counter, tuple[str, ...]], Counter] = {}
        for result in self._seen:
            self.lookups.labels(result)  # present (at 0) before the first check

    # -- what the process tells us ---------------------------------------------------------

    def observe_appended(self, recorded: Sequence[RecordedEvent]) -> None:
        """`Context.on_recorded`: count what this process appended."""
        outcome = current_outcome()
        for event in recorded:
            self._count(self.appended, event.type)
            if outcome is not None:
                outcome.appended.append(event.type)

    def observe_request(
        self, method: str, route: str | None, status: int, seconds: float, outcome: RequestOutcome
    ) -> None:
        """Called by the request middleware once the response has started."""
        label = route or UNMATCHED
        method = method if method in METHODS else OTHER_METHOD
        key = (method, label, status)
        children = self._per_request.get(key)
        if children is None:  # prometheus_client's labels() checks and locks on every call
            children = (
                self.requests.labels(method, label, str(status)),
                self.latency.labels(method, label),
            )
            self._per_request[key] = children
        children[0].inc()
        children[1].observe(seconds)
        refused = None  # the refusal's code, when the answer is one
        if status >= 400:
            refused = outcome.error or ("internal_error" if status >= 500 else f"http_{status}")
            self._count(self.refusals, label, refused)
        if (method, label) == ("POST", REGISTER_PATH):
            self._count(self.registrations, refused or _flow(outcome))
        elif (step := _STEPS.get((method, label))) is not None:
            self._count(self.claims, step, refused or "ok")
        # The credential cache's figures are not synced here, on every request: the
        # refresher (every REFRESH_EVERY seconds) and each scrape of this process do it.

    def _count(self, counter: Counter, *labels: str) -> None:
        """`counter.labels(*labels).inc()`, the child kept (labels() checks and locks)."""
        child = self._children.get((counter, labels))
        if child is None:
            child = self._children[(counter, labels)] = counter.labels(*labels)
        child.inc()

    def _sync_cache(self) -> None:
        if self._cache is None:
            return
        stats = self._cache.stats
        for result, total in (
            ("hit", stats.hits),
            ("negative_hit", stats.negative_hits),
            ("miss", stats.misses),
        ):
            delta = total - self._seen[result]
            if delta > 0:
                self.lookups.labels(result).inc(delta)
                self._seen[result] = total
        checks = stats.hits + stats.negative_hits + stats.misses
        self.hit_ratio.set((stats.hits + stats.negative_hits) / checks if checks else 0.0)
        self.entries.set(len(self._cache))

    # -- scraping --------------------------------------------------------------------------

    async def scrape(self) -> bytes:
        """The exposition text: the database figures read now, the process's refreshed."""
        await self._read_database()
        return generate_latest(self.registry)

    async def _read_database(self) -> None:
        figures = self._figures
        read = await read_figures(
            self._pool, figures, relay_checkpoint=self._relay_checkpoint,
            tenant_id=self._tenant_id, clock=self._clock,
        )  # fmt: skip
        if read:
            self._refresh_process(figures.head)
        else:
            self._sync_cache()

    def _refresh_process(self, head: int) -> None:
        self._sync_cache()
        cache = self._cache
        lag = max(head - cache.position, 0) if cache is not None and cache.live else 0
        self.feed_lag.labels("credential_cache").set(lag)

    async def refresh(self) -> None:
        """This process's gauges, kept current for the other children's scrapes."""
        head = await self._pool.fetchval(Q["head"])
        self._refresh_process(int(head))

    async def run_refresher(self, stop: asyncio.Event, every: float = REFRESH_EVERY) -> None:
        """`refresh` every `every` seconds until `stop` is set (multiprocess children)."""
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # metrics never stop a serving process
                log.warning("metrics.refresh_failed", error=type(exc).__name__)
            with suppress(TimeoutError):
                async with asyncio.timeout(every):  # not wait_for: it may swallow a cancel
                    await stop.wait()


def _flow(outcome: RequestOutcome) -> str:
    for event_type, flow in _FLOWS:
        if event_type in outcome.appended:
            return flow
    return "registered"


def multiprocess_dir() -> str | None:
    """The multiprocess folder this process writes to, if its parent set one up."""
    return os.environ.get(MULTIPROC_ENV) or None
