"""The rate limiter against real Postgres: shared counts, tier order, sliding windows, no
personal data at rest, pruning, the fail policy on real store failures, and start-up checks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from events.clock import ManualClock
from service.ratelimit import RateLimited, RateLimiter, WindowStore, load_limits
from service.ratelimit.limiter import FAIL_CLOSED_RETRY_AFTER, FailurePolicy
from service.ratelimit.limits import RateLimits, parse_limits
from tests.integration.test_cli import _run
from tests.support.backends import Backend
from tests.support.serve_process import SECRETS, authledger_env

SECRET = "s" * 40
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)  # the start of an hour: windows are predictable
IP_A, IP_B, IP_C = "198.51.100.1", "198.51.100.2", "198.51.100.3"
SMALL = parse_limits(
    """
    [default]
    anonymous_per_ip = "2/h"
    anonymous_per_tenant = "3/h"
    """
)


def limiter_on(
    pool: asyncpg.Pool,
    clock: ManualClock,
    limits: RateLimits | None = SMALL,
    failure: FailurePolicy = "open",
) -> RateLimiter:
    return RateLimiter(limits, WindowStore(pool), secret_key=SECRET, clock=clock, failure=failure)


async def admitted(limiter: RateLimiter, ip: str) -> bool:
    try:
        await limiter.registration("default", "anonymous", ip)
    except RateLimited:
        return False
    return True


async def hits(pool: asyncpg.Pool, limit: str) -> int:
    """The hits counted for `limit` in all its buckets."""
    query = "SELECT coalesce(sum(hits), 0) FROM rate_limit_windows WHERE bucket LIKE $1"
    return int(await pool.fetchval(query, f"{limit}:%"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def other_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A second replica's pool on the same database."""
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        yield created
    finally:
        await created.close()


async def test_concurrent_checks_admit_exactly_the_limit(
    pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """20 requests at once from one address against 5/h: exactly 5 get through."""
    limiter = limiter_on(pool, clock, load_limits("on"))
    results = await asyncio.gather(*(admitted(limiter, IP_A) for _ in range(20)))
    assert results.count(True) == 5
    assert await hits(pool, "anonymous_per_ip") == 5
    assert limiter.counts["admitted"] == 5
    assert limiter.counts["refused.anonymous_per_ip"] == 15


async def test_two_replicas_share_the_counts(
    pool: asyncpg.Pool, other_pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """Two limiters on two pools (two processes' worth): 5/h holds across both."""
    one = limiter_on(pool, clock, load_limits("on"))
    two = limiter_on(other_pool, clock, load_limits("on"))
    assert [await admitted(one, IP_A) for _ in range(3)] == [True] * 3
    assert [await admitted(two, IP_A) for _ in range(2)] == [True] * 2
    assert not await admitted(two, IP_A)
    assert not await admitted(one, IP_A)


async def test_ip_tier_first_and_a_refusal_spends_nothing(
    pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """Refused at the IP tier: the tenant's budget is untouched. Refused at the tenant tier:
    the IP's hit is given back. Refused requests never count."""
    limiter = limiter_on(pool, clock)
    assert [await admitted(limiter, IP_A) for _ in range(2)] == [True, True]
    with pytest.raises(RateLimited, match="from this address") as at_ip:
        await limiter.registration("default", "anonymous", IP_A)
    assert (at_ip.value.status, at_ip.value.code) == (429, "rate_limited")
    assert await hits(pool, "anonymous_per_tenant") == 2
    assert await admitted(limiter, IP_B)  # the tenant's third
    with pytest.raises(RateLimited, match="at this service"):
        await limiter.registration("default", "anonymous", IP_C)
    assert await hits(pool, "anonymous_per_tenant") == 3
    assert await hits(pool, "anonymous_per_ip") == 3  # A twice, B once; C given back
    assert limiter.counts["refused.anonymous_per_ip"] == 1
    assert limiter.counts["refused.anonymous_per_tenant"] == 1


async def test_an_unknown_address_skips_the_ip_tier(pool: asyncpg.Pool, clock: ManualClock) -> None:
    """No client address: only the tenant tier counts (spec §10)."""
    limiter = limiter_on(pool, clock)
    assert [await admitted(limiter, "") for _ in range(3)] == [True] * 3
    assert await hits(pool, "anonymous_per_ip") == 0
    assert not await admitted(limiter, "")


async def test_the_window_slides_and_retry_after_is_exact(
    pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """5/h filled at 9:00: refused with Retry-After 1 h 12 min (the next hour, until a fifth
    of the old hits has slid out); still refused a second before it, admitted at it."""
    limiter = limiter_on(pool, clock, load_limits("on"))
    assert [await admitted(limiter, IP_A) for _ in range(5)] == [True] * 5
    clock.advance(timedelta(minutes=30))
    with pytest.raises(RateLimited) as refused:
        await limiter.registration("default", "anonymous", IP_A)
    wait = refused.value.retry_after
    assert wait == (30 + 12) * 60
    clock.advance(timedelta(seconds=wait - 1))
    assert not await admitted(limiter, IP_A)
    clock.advance(timedelta(seconds=1))
    assert await admitted(limiter, IP_A)
    assert not await admitted(limiter, IP_A)  # the slid estimate is full again


async def test_the_store_and_retry_after_agree_to_the_microsecond(
    pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """15/h, 15 hits last hour and 4 this hour (at 10:16, when 15 * weight is 11): the 5th
    fits once 15 * weight is down to 10, a third into the hour, at 10:20:00 exactly.
    Retry-After from 10:16 says 240 s; the store refuses a microsecond before and admits at
    it. (With the weight as a float, 15 * (1 - 1200/3600) came to 10.000000000000002: the
    store refused at 10:20:00, and Retry-After said 241 s.)"""
    limits = parse_limits('[default]\nanonymous_per_ip = "15/h"\nanonymous_per_tenant = "off"')
    limiter = limiter_on(pool, clock, limits)
    assert [await admitted(limiter, IP_A) for _ in range(15)] == [True] * 15
    clock.advance(timedelta(hours=1, minutes=16))
    assert [await admitted(limiter, IP_A) for _ in range(4)] == [True] * 4
    with pytest.raises(RateLimited) as refused:
        await limiter.registration("default", "anonymous", IP_A)
    assert refused.value.retry_after == 240
    clock.advance(timedelta(seconds=240, microseconds=-1))
    assert not await admitted(limiter, IP_A)
    clock.advance(timedelta(microseconds=1))
    assert await admitted(limiter, IP_A)
    assert not await admitted(limiter, IP_A)


async def test_counters_hold_no_personal_data(pool: asyncpg.Pool, clock: ManualClock) -> None:
    """Buckets are `<limit>:<period>:<tenant>:<hmac>`; no address, email, registration id or
    issuer appears in the table."""
    limiter = limiter_on(pool, clock, load_limits("on"))
    await limiter.registration("default", "verified_email", IP_A, recipient="Cy@Example.net")
    await limiter.revocation("default", "https://idp.example.net")
    await limiter.check(
        "default",
        [
            ("claim_per_registration", "registration", "reg_abcdef"),
            ("claim_per_email", "email", "ana@example.net"),
        ],
    )
    rows = await pool.fetch("SELECT bucket FROM rate_limit_windows")
    buckets = sorted(row["bucket"] for row in rows)
    assert len(buckets) == 6
    assert all(re.fullmatch(r"[a-z_]+:[0-9]+:default:[0-9a-f]{32}", b) for b in buckets)
    text = " ".join(buckets)
    for plain in (IP_A, "ana@example.net", "cy@example.net", "example.net", "reg_abcdef",
                  "idp.example"):  # fmt: skip
        assert plain not in text


async def test_expired_windows_are_pruned_by_later_checks(
    pool: asyncpg.Pool, clock: ManualClock
) -> None:
    """Rows no estimate reads any more go on the next admitted check: no worker needed."""
    limiter = limiter_on(pool, clock)
    for ip in (IP_A, IP_B):
        assert await admitted(limiter, ip)
    assert await pool.fetchval("SELECT count(*) FROM rate_limit_windows") == 3
    clock.advance(timedelta(hours=1))
    assert await admitted(limiter, IP_C)  # last hour's rows are still read as "previous"
    assert await pool.fetchval("SELECT count(*) FROM rate_limit_windows") == 5
    clock.advance(timedelta(hours=3))
    assert await admitted(limiter, IP_C)
    windows = await pool.fetch("SELECT window_no FROM rate_limit_windows")
    assert {row["window_no"] for row in windows} == {int(clock.now().timestamp()) // 3_600}


async def test_limits_off_count_nothing(pool: asyncpg.Pool, clock: ManualClock) -> None:
    limiter = limiter_on(pool, clock, None)
    assert not limiter.enabled
    assert [await admitted(limiter, IP_A) for _ in range(10)] == [True] * 10
    assert await pool.fetchval("SELECT count(*) FROM rate_limit_windows") == 0


@pytest.mark.parametrize("failure", ["open", "closed"])
async def test_a_missing_table_follows_the_fail_policy(
    pool: asyncpg.Pool, owner_pool: asyncpg.Pool, clock: ManualClock, failure: FailurePolicy
) -> None:
    """The store really fails (its table is gone): logged without personal data, counted,
    then admitted (open) or refused with Retry-After (closed)."""
    limiter = limiter_on(pool, clock, failure=failure)
    await owner_pool.execute("DROP TABLE rate_limit_windows")
    with capture_logs() as logs:
        if failure == "open":
            assert [await admitted(limiter, IP_A) for _ in range(4)] == [True] * 4
        else:
            with pytest.raises(RateLimited) as refused:
                await limiter.registration("default", "anonymous", IP_A)
            assert refused.value.retry_after == FAIL_CLOSED_RETRY_AFTER
            assert "unavailable" in refused.value.message
    expected = 4 if failure == "open" else 1
    assert limiter.counts["store_failed"] == expected
    failed = [entry for entry in logs if entry["event"] == "ratelimit.store_failed"]
    assert len(failed) == expected
    assert failed[0]["log_level"] == "warning"
    assert failed[0]["policy"] == failure
    assert failed[0]["error"] == "UndefinedTableError"
    assert IP_A not in repr(logs)


async def test_a_closed_pool_is_a_store_failure(database_url: str, clock: ManualClock) -> None:
    """A pool that is gone (the process lost Postgres) fails like any other store error."""
    gone = await asyncpg.create_pool(database_url, min_size=0, max_size=1)
    await gone.close()
    limiter = limiter_on(gone, clock, failure="closed")
    with pytest.raises(RateLimited):
        await limiter.registration("default", "anonymous", IP_A)
    assert limiter.counts["store_failed"] == 1
    opened = limiter_on(gone, clock, failure="open")
    assert await admitted(opened, IP_A)
    assert opened.counts["store_failed"] == 1


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("AUTHLEDGER_RATE_LIMITS", '[default]\nanonymous_per_ip = "lots"\n', "anonymous_per_ip"),
        ("AUTHLEDGER_RATE_LIMITS", '[defaults]\nanonymous_per_ip = "5/h"\n', "'defaults'"),
        ("AUTHLEDGER_RATE_LIMIT_FAILURE", "sometimes", "one of open, closed"),
    ],
)
async def test_bad_rate_limit_settings_stop_serve_with_one_line(
    backend: Backend, database_url: str, tmp_path: Path, *, variable: str, value: str, named: str
) -> None:
    """`serve` with a wrong limits file or fail policy: exit 2, one stderr line naming the
    variable (and, for a file, the key), nothing served."""
    env = authledger_env(
        AUTHLEDGER_DATABASE_URL=database_url, AUTHLEDGER_NATS_URL=backend.nats_url, **SECRETS
    )
    if variable == "AUTHLEDGER_RATE_LIMITS":
        limits = tmp_path / "limits.toml"
        limits.write_text(value)
        value = str(limits)
    env[variable] = value
    status, out, err = await _run(["serve", "--port", "0"], env)
    assert status == 2, err
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"{variable}: ")
    assert named in err
    assert "Traceback" not in err
