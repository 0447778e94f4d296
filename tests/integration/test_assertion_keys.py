"""Assertions and the key ring in Postgres: a process that has not seen another's rotation
reloads its ring once on the unknown kid, and forged kids do not make it query every time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from service.crypto.assertions import (
    UnknownAssertionKey,
    issue_assertion,
    verify_assertion_reloading,
)
from service.crypto.signing import MISS_RELOAD_INTERVAL, KeyRing, new_signing_key

SECRET = "r" * 48
ISSUER = "https://auth.example"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=1)


async def test_a_rotation_elsewhere_is_picked_up_on_the_miss(pool: asyncpg.Pool) -> None:
    """A ring loaded before another process rotated verifies the new key's assertion after
    one reload; a second unknown kid within the interval is refused without a reload."""
    here, there = KeyRing(SECRET), KeyRing(SECRET)
    await here.ensure_active(pool, T0)
    await there.load(pool)
    rotated = await there.rotate(pool, T0 + timedelta(minutes=1))
    token, _ = issue_assertion(there, issuer=ISSUER, sub="reg_a", gen=0, now=T0, ttl=TTL)
    assert rotated.kid not in {key.kid for key in here.keys}

    now = T0 + timedelta(minutes=2)
    claims = await verify_assertion_reloading(here, pool, token, issuer=ISSUER, now=now)
    assert claims.subject == "reg_a"
    assert rotated.kid in {key.kid for key in here.keys}

    stranger = KeyRing(SECRET)
    stranger.hold(new_signing_key(T0))
    forged, _ = issue_assertion(stranger, issuer=ISSUER, sub="reg_a", gen=0, now=T0, ttl=TTL)
    with pytest.raises(UnknownAssertionKey):
        await verify_assertion_reloading(here, pool, forged, issuer=ISSUER, now=now)
    assert not await here.load_on_miss(pool, now + MISS_RELOAD_INTERVAL / 2)
    assert await here.load_on_miss(pool, now + MISS_RELOAD_INTERVAL)
