"""Operability over HTTP: `/metrics` (service.observability.metrics) and the request id on every
answer and
every log line of a request, against the real app, Postgres and NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import structlog
from litestar import get
from prometheus_client.parser import text_string_to_metric_families

from service.http.app import create_app
from service.runtime.resources import Resources
from tests.support.app_client import (
    ADMIN_TOKEN,
    Service,
    asgi_client,
    running_service,
    settings_for,
)
from tests.support.backends import Backend
from tests.support.serve_process import SECRETS, authledger_env, serving
from tests.support.waiting import wait_until

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ANONYMOUS = {"type": "anonymous", "requested_credential_type": "api_key"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(service: Service) -> Samples:
    answer = await service.client.get("/metrics", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return parse(answer.text)


@pytest.fixture
async def service(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as running:
        yield running


async def test_metrics_need_the_admin_token(service: Service) -> None:
    """/metrics answers 401 without the admin token, and the exposition format with it."""
    refused = await service.client.get("/metrics")
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"
    wrong = await service.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    answer = await service.client.get("/metrics", headers=ADMIN)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert value(parse(answer.text), "authledger_database_up") == 1


async def test_requests_are_counted_by_route_template_never_by_raw_path(service: Service) -> None:
    """Labels name the route template; a token in the path or query never reaches them."""
    secret = "linktoken-" + "x" * 40
    page = await service.client.get("/agent/auth/claim/view", params={"token": secret})
    assert page.status_code == 404
    missing = await service.client.get("/admin/subscriptions/sub_secretid", headers=ADMIN)
    assert missing.status_code == 404
    for _ in range(3):
        assert (await service.client.get("/healthz")).status_code == 200
    assert (await service.client.get(f"/no/such/{secret}")).status_code == 404
    for n in range(3):  # a stranger's made-up methods share one label
        assert (await service.client.request(f"BREW{n}", "/healthz")).status_code == 405
    text = (await service.client.get("/metrics", headers=ADMIN)).text
    assert secret not in text
    assert "sub_secretid" not in text
    samples = parse(text)
    requests = "authledger_http_requests_total"
    assert value(samples, requests, method="GET", route="/healthz", status="200") == 3
    view = {"method": "GET", "route": "/agent/auth/claim/view"}
    assert value(samples, requests, **view, status="404") == 1
    one = "/admin/subscriptions/{subscription_id}"
    assert value(samples, requests, method="GET", route=one, status="404") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert not any('method="BREW' in line for line in text.splitlines())
    assert value(samples, requests, method="OTHER", route="unmatched", status="405") == 3
    latency = "authledger_http_request_duration_seconds_count"
    assert value(samples, latency, method="GET", route="/healthz") == 3
    refusals = "authledger_http_refusals_total"
    assert value(samples, refusals, route="/agent/auth/claim/view", error="claim_superseded") == 1
    assert value(samples, refusals, route=one, error="not_found") == 1


async def test_registrations_claims_and_appends_by_outcome(service: Service) -> None:
    """E4 by flow or refusal code, claim steps by outcome, appended events by type."""
    anonymous = await service.anonymous()
    await service.verified_email("person@example.com")
    bad = await service.client.post("/agent/auth", json={**ANONYMOUS, "type": "other"})
    assert bad.status_code == 400
    unsupported = {**ANONYMOUS, "requested_credential_type": "password"}
    assert (await service.client.post("/agent/auth", json=unsupported)).status_code == 400
    started = await service.client.post(
        "/agent/auth/claim",
        json={"claim_token": anonymous["claim_token"], "email": "owner@example.com"},
    )
    assert started.status_code == 200, started.text
    wrong = await service.client.post(
        "/agent/auth/claim/complete", json={"claim_token": "nope", "otp": "123456"}
    )
    assert wrong.status_code == 401
    samples = await scrape(service)
    registrations = "authledger_registrations_total"
    assert value(samples, registrations, outcome="anonymous") == 1
    assert value(samples, registrations, outcome="verified_email") == 1
    assert value(samples, registrations, outcome="invalid_request") == 1
    assert value(samples, registrations, outcome="unsupported_credential_type") == 1
    claims = "authledger_claims_total"
    assert value(samples, claims, step="start", outcome="ok") == 1
    assert value(samples, claims, step="complete", outcome="invalid_claim_token") == 1
    appended = "authledger_events_appended_total"
    assert value(samples, appended, type="registration.created") == 2
    assert value(samples, appended, type="claim.attempt_started") == 2
    assert value(samples, appended, type="credential.issued") == 1


async def test_lags_and_deliveries_are_read_from_postgres(
    service: Service, owner_pool: asyncpg.Pool
) -> None:
    """Relay lag is head minus the relay's checkpoint, expiry lag now minus the oldest
    unrecorded deadline, deliveries the subscriptions' counters."""
    await service.anonymous()
    head = await service.head()
    samples = await scrape(service)
    assert value(samples, "authledger_log_head_position") == head
    assert value(samples, "authledger_relay_lag_events") == head  # no relay has run
    assert value(samples, "authledger_expiry_lag_seconds") == 0
    pool = service.resources.pool
    await pool.execute(
        "INSERT INTO checkpoints (name, position) VALUES ('relay:AUTHLEDGER', $1)", head - 1
    )
    ttl = service.tenant.registration_ttl
    service.clock.advance(timedelta(seconds=ttl + 42))
    created = await service.client.post(
        "/admin/subscriptions", json={"url": "https://receiver.example.test/hook"}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    # counters set by hand, as the owner: the runtime may not write a row without its event
    await owner_pool.execute("UPDATE subscriptions SET delivered = 5, failed_attempts = 2")
    samples = await scrape(service)
    assert value(samples, "authledger_relay_lag_events") == await service.head() - (head - 1)
    assert value(samples, "authledger_expiry_lag_seconds") == 42
    pushes = "authledger_push_deliveries_total"
    assert value(samples, pushes, outcome="delivered") == 5
    assert value(samples, pushes, outcome="failed") == 2
    assert ((pushes, frozenset({("outcome", "dead_lettered")}))) in samples


async def test_cache_hit_ratio_and_feed_lag(service: Service) -> None:
    """Bearer checks answered from memory count as hits; a live feed at the head has no lag."""
    cache = service.resources.credentials
    assert cache is not None
    await cache.start()
    key = (await service.anonymous())["credential"]
    for _ in range(4):
        me = await service.client.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200
    head = await service.head()
    # the feed reads the appends back (LISTEN-woken), in milliseconds
    await wait_until(lambda: cache.position >= head, within=5, what="the cache's feed at the head")
    samples = await scrape(service)
    lookups = "authledger_credential_cache_lookups_total"
    hits, misses = value(samples, lookups, result="hit"), value(samples, lookups, result="miss")
    assert (hits, misses) == (3, 1)
    assert value(samples, "authledger_credential_cache_hit_ratio") == 0.75
    assert value(samples, "authledger_credential_cache_entries") == 1
    lag = "authledger_projection_lag_events"
    assert value(samples, lag, projection="credential_cache") == 0
    assert (lag, frozenset({("projection", "inline")})) in samples


@get("/test/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("a bug")


async def test_every_answer_and_request_log_line_carries_the_request_id(
    backend: Backend, database_url: str
) -> None:
    """200, 400 (HTML), 404, 405, 413, 500: each answer echoes its X-Request-ID, and each log
    line written while it was handled names it."""
    settings = settings_for(backend, database_url)
    resources = await Resources.open(settings, pool_size=2)
    app = create_app(settings, resources=resources, dev_routes=[boom])
    calls: list[tuple[str, str, Mapping[str, Any]]] = [
        ("GET", "/healthz", {}),
        ("GET", "/agent/auth/claim/view", {}),  # no token: the HTML problem page, 400
        ("POST", "/agent/auth/claim/attempt/challenge", {"data": {"x": "1"}}),  # form → HTML
        ("GET", "/no/such/path", {}),
        ("DELETE", "/healthz", {}),
        ("POST", "/agent/auth", {"json": {"type": "anonymous", "pad": "x" * 20_000}}),
        ("GET", "/test/boom", {}),
        ("POST", "/agent/auth", {"json": ANONYMOUS}),
    ]
    try:
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as logs:
            async with asgi_client(app) as client:
                answers = [
                    await client.request(method, path, headers={"X-Request-ID": f"r-{i}"}, **kw)
                    for i, (method, path, kw) in enumerate(calls)
                ]
                generated = await client.get("/healthz", headers={"X-Request-ID": "bad id!"})
    finally:
        await resources.close()
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200, 400, 400, 404, 405, 413, 500, 200]
    assert answers[1].headers["content-type"].startswith("text/html")
    assert answers[2].headers["content-type"].startswith("text/html")
    assert [a.headers.get("x-request-id") for a in answers] == [f"r-{i}" for i in range(8)]
    made = generated.headers["x-request-id"]
    assert made != "bad id!"
    assert len(made) == 32
    by_request = {f"r-{i}": [e for e in logs if e.get("request_id") == f"r-{i}"] for i in range(8)}
    for i, status in enumerate(statuses):
        lines = by_request[f"r-{i}"]
        assert [(e["event"], e["status"]) for e in lines if e["event"] == "http.request"] == [
            ("http.request", status)
        ], lines
    assert any(e["event"] == "http.unhandled" for e in by_request["r-6"])
    assert any(e["event"] == "http.refused" for e in by_request["r-5"])
    request_lines = [e for e in logs if str(e["event"]).startswith("http.")]
    assert all("request_id" in e for e in request_lines), request_lines
    assert json.dumps(answers[6].json()) == json.dumps(
        {"error": "internal_error", "message": "internal error"}
    )


async def test_two_processes_report_one_sum(backend: Backend, database_url: str) -> None:
    """`serve --workers 2`: whichever child answers, /metrics sums both children's counters
    and lists each live child's per-process gauges by pid."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    admin = {"Authorization": f"Bearer {SECRETS['AUTHLEDGER_ADMIN_TOKEN']}"}
    async with serving(["--workers", "2"], env) as server:
        sent = 60
        answers = await asyncio.gather(*(server.http.get("/auth.md") for _ in range(sent)))
        assert {a.status_code for a in answers} == {200}

        async def both_children() -> bool:
            samples = parse((await server.http.get("/metrics", headers=admin)).text)
            ratios = "authledger_credential_cache_hit_ratio"
            return len({dict(labels)["pid"] for name, labels in samples if name == ratios}) == 2

        await wait_until(
            both_children, within=20, what="both children's gauges in /metrics", every=0.2
        )
        for _ in range(6):  # any child answers with the same sum
            samples = parse((await server.http.get("/metrics", headers=admin)).text)
            served = value(
                samples, "authledger_http_requests_total", method="GET", route="/auth.md",
                status="200",
            )  # fmt: skip
            assert served == sent
        status, err = await server.stop()
    assert status == 0, err
