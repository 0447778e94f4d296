"""The JWKS cache against a test provider serving its keys over real HTTP on 127.0.0.1 (spec §7.4).

Cache ages follow a ManualClock, so "ten minutes later" is a clock move, not a wait. Counting is
done on both sides: the provider counts the requests it received, the cache the ones it sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from events.clock import ManualClock
from service.domain.errors import ProtocolError
from service.providers.assertions import verify_id_jag, verify_logout_token
from service.providers.jwks import JwksCache, KeyUnavailable
from service.providers.trust import TrustedIssuer, VerifiedAssertion
from tests.support.idp import REVOKED_EVENT, IdentityProvider, ProviderKey, TrustList
from tests.support.outbound import LOOPBACK_POLICY

AUD = "https://auth.example.com"
RESOURCE = "https://api.example.com/api"
SECONDS = timedelta(seconds=1)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with IdentityProvider() as provider:
        yield provider


@pytest.fixture
async def cache(clock: ManualClock) -> AsyncIterator[JwksCache]:
    created = JwksCache(
        clock=clock, allow_loopback_http=True, outbound=LOOPBACK_POLICY,
        timeout=timedelta(seconds=1),
    )  # fmt: skip
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
def trust(idp: IdentityProvider) -> TrustList:
    return TrustList(idp.trusted())


async def verify(
    token: str, *, trust: TrustList, cache: JwksCache, clock: ManualClock
) -> VerifiedAssertion:
    return await verify_id_jag(
        token, trust=trust, keys=cache, audience=AUD, resource=RESOURCE, now=clock.now()
    )


async def refusal(token: str, *, trust: TrustList, cache: JwksCache, clock: ManualClock) -> str:
    with pytest.raises(ProtocolError) as refused:
        await verify(token, trust=trust, cache=cache, clock=clock)
    return refused.value.code


async def test_one_fetch_serves_many_verifications(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """Sixty verifications, sequential and concurrent, cost one JWKS request."""
    for _ in range(40):
        token = idp.mint_id_jag(aud=AUD, now=clock.now())
        assert (await verify(token, trust=trust, cache=cache, clock=clock)).issuer == idp.issuer
    tokens = [idp.mint_id_jag(aud=AUD, now=clock.now()) for _ in range(20)]
    results = await asyncio.gather(
        *(verify(t, trust=trust, cache=cache, clock=clock) for t in tokens)
    )
    assert len({r.jti for r in results}) == 20
    assert idp.jwks_requests == 1
    assert cache.fetches == {idp.jwks_url: 1}


async def test_concurrent_misses_share_one_fetch(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """Twenty agents arriving while the first fetch is in flight all wait for that one fetch."""
    idp.hold()
    tokens = [idp.mint_id_jag(aud=AUD, now=clock.now()) for _ in range(20)]
    tasks = [asyncio.create_task(verify(t, trust=trust, cache=cache, clock=clock)) for t in tokens]
    await idp.wait_for_requests(1)
    assert not any(task.done() for task in tasks)
    idp.release()
    results = await asyncio.gather(*tasks)
    assert {r.subject for r in results} == {"user-1"}
    assert idp.jwks_requests == 1
    assert cache.fetches[idp.jwks_url] == 1


async def test_agent_giving_up_does_not_cancel_the_fetch_others_wait_for(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """The shared fetch survives the cancellation of the request that started it."""
    idp.hold()
    first, second = (idp.mint_id_jag(aud=AUD, now=clock.now()) for _ in range(2))
    starter = asyncio.create_task(verify(first, trust=trust, cache=cache, clock=clock))
    await idp.wait_for_requests(1)
    waiter = asyncio.create_task(verify(second, trust=trust, cache=cache, clock=clock))
    starter.cancel()
    idp.release()
    assert (await waiter).subject == "user-1"
    assert starter.cancelled()
    assert idp.jwks_requests == 1


async def test_rotated_key_is_picked_up_after_exactly_one_refetch(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """A new kid triggers one refetch; the new and the kept old key then verify without more."""
    old_token = idp.mint_id_jag(aud=AUD, now=clock.now())
    await verify(old_token, trust=trust, cache=cache, clock=clock)
    clock.advance(timedelta(minutes=1))
    new_key = idp.rotate()
    for _ in range(3):
        token = idp.mint_id_jag(aud=AUD, now=clock.now())
        assert (await verify(token, trust=trust, cache=cache, clock=clock)).key_id == new_key.kid
    old_again = idp.mint_id_jag(aud=AUD, now=clock.now(), key=idp.keys[0])
    assert (await verify(old_again, trust=trust, cache=cache, clock=clock)).key_id != new_key.kid
    assert idp.jwks_requests == 2


async def test_key_dropped_by_the_provider_is_dropped_by_the_cache(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """After a refetch, a key the provider no longer publishes no longer verifies."""
    old_key = idp.signing_key
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    clock.advance(timedelta(minutes=1))
    idp.rotate(keep_old=False)
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    stale = idp.mint_id_jag(aud=AUD, now=clock.now(), key=old_key)
    assert await refusal(stale, trust=trust, cache=cache, clock=clock) == "invalid_signature"
    assert idp.jwks_requests == 2


async def test_unknown_kid_is_negative_cached_for_the_refetch_interval(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """An unknown kid refetches once, then is refused without a request for 30 s."""
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    clock.advance(timedelta(minutes=1))
    stranger = ProviderKey.generate()
    claims = idp.id_jag_claims(aud=AUD, now=clock.now())
    forged = idp.sign(claims, key=stranger)
    assert await refusal(forged, trust=trust, cache=cache, clock=clock) == "invalid_signature"
    assert idp.jwks_requests == 2
    clock.advance(29 * SECONDS)
    assert await refusal(forged, trust=trust, cache=cache, clock=clock) == "invalid_signature"
    assert idp.jwks_requests == 2
    clock.advance(SECONDS)
    assert await refusal(forged, trust=trust, cache=cache, clock=clock) == "invalid_signature"
    assert idp.jwks_requests == 3
    assert cache.fetches[idp.jwks_url] == 3


@pytest.mark.parametrize(
    ("max_age", "fresh_for"),
    [
        (None, timedelta(minutes=10)),
        (5, timedelta(minutes=10)),
        (3600, timedelta(hours=1)),
        (10_000_000, timedelta(hours=24)),
    ],
)
async def test_cache_control_max_age_is_honoured_within_the_clamp(
    idp: IdentityProvider,
    cache: JwksCache,
    trust: TrustList,
    clock: ManualClock,
    *,
    max_age: int | None,
    fresh_for: timedelta,
) -> None:
    """Keys are reused until max-age (clamped to 10 min-24 h) runs out, then fetched again."""
    idp.max_age = max_age
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    clock.advance(fresh_for - SECONDS)
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    assert idp.jwks_requests == 1
    clock.advance(SECONDS)
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    assert idp.jwks_requests == 2


async def test_slow_provider_times_out_without_delaying_another_issuer(
    idp: IdentityProvider, cache: JwksCache, clock: ManualClock
) -> None:
    """While one provider's JWKS hangs, another provider's agents are verified; the hanging
    one ends in invalid_signature once the fetch timeout passes."""
    async with IdentityProvider() as other:
        trust = TrustList(idp.trusted(), other.trusted())
        idp.hold()
        finished: list[str] = []

        async def run(provider: IdentityProvider) -> str:
            token = provider.mint_id_jag(aud=AUD, now=clock.now())
            try:
                await verify(token, trust=trust, cache=cache, clock=clock)
            except ProtocolError as error:
                finished.append(provider.issuer)
                return error.code
            finished.append(provider.issuer)
            return "accepted"

        slow = asyncio.create_task(run(idp))
        await idp.wait_for_requests(1)
        async with asyncio.timeout(5):
            assert await run(other) == "accepted"
        assert not slow.done()
        async with asyncio.timeout(5):
            assert await slow == "invalid_signature"
        assert finished == [other.issuer, idp.issuer]
        assert cache.failures[idp.jwks_url] == 1


async def test_agents_of_a_hanging_provider_share_one_timeout(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """Ten agents of a provider slower than the timeout cost one request and one timeout."""
    idp.delay = timedelta(minutes=1)
    tokens = [idp.mint_id_jag(aud=AUD, now=clock.now()) for _ in range(10)]
    async with asyncio.timeout(5):
        codes = await asyncio.gather(
            *(refusal(t, trust=trust, cache=cache, clock=clock) for t in tokens)
        )
    assert set(codes) == {"invalid_signature"}
    assert idp.jwks_requests == 1


@pytest.mark.parametrize("outage", ["refused", "503"])
async def test_cached_keys_outlive_a_provider_outage(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock, outage: str
) -> None:
    """When a refresh fails the cached keys stay in use; the provider is retried every 30 s."""
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    if outage == "refused":
        await idp.go_down()
    else:
        idp.status = 503
    clock.advance(timedelta(minutes=11))
    for _ in range(3):
        token = idp.mint_id_jag(aud=AUD, now=clock.now())
        assert (await verify(token, trust=trust, cache=cache, clock=clock)).issuer == idp.issuer
    assert (cache.fetches[idp.jwks_url], cache.failures[idp.jwks_url]) == (2, 1)
    if outage == "refused":
        await idp.come_back()
    idp.status = 200
    clock.advance(30 * SECONDS)
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    assert (cache.fetches[idp.jwks_url], cache.failures[idp.jwks_url]) == (3, 1)


async def test_provider_down_before_any_fetch_is_invalid_signature(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """With nothing cached, an unreachable JWKS is invalid_signature."""
    token = idp.mint_id_jag(aud=AUD, now=clock.now())
    await idp.go_down()
    assert await refusal(token, trust=trust, cache=cache, clock=clock) == "invalid_signature"
    assert cache.failures[idp.jwks_url] == 1


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_jwks_is_refused(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock, chunked: bool
) -> None:
    """A JWKS over 64 KiB is refused, whether announced by Content-Length or streamed."""
    idp.oversize = 200 * 1024
    idp.chunked = chunked
    token = idp.mint_id_jag(aud=AUD, now=clock.now())
    assert await refusal(token, trust=trust, cache=cache, clock=clock) == "invalid_signature"
    assert (idp.jwks_requests, cache.failures[idp.jwks_url]) == (1, 1)


async def test_chunked_jwks_within_the_cap_is_read(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """A streamed JWKS under the cap (here with 40 KiB of padding) is accepted."""
    idp.oversize = 40 * 1024
    idp.chunked = True
    token = idp.mint_id_jag(aud=AUD, now=clock.now())
    assert (await verify(token, trust=trust, cache=cache, clock=clock)).subject == "user-1"


async def test_jwks_over_plain_http_to_another_host_is_never_fetched(
    cache: JwksCache, clock: ManualClock
) -> None:
    """Only https, or http to a loopback address when allowed: no request is even attempted."""
    provider = IdentityProvider(issuer="http://idp.example")
    trust = TrustList(provider.trusted())
    token = provider.mint_id_jag(aud=AUD, now=clock.now())
    assert await refusal(token, trust=trust, cache=cache, clock=clock) == "invalid_signature"
    for url in ("http://192.0.2.1/jwks.json", "ftp://127.0.0.1/jwks.json", "not a url"):
        with pytest.raises(KeyUnavailable):
            await cache.key(TrustedIssuer(issuer="https://idp.example", jwks_uri=url), "kid")
    assert sum(cache.fetches.values()) == 0


async def test_loopback_http_needs_the_opt_in(
    idp: IdentityProvider, trust: TrustList, clock: ManualClock
) -> None:
    """Without allow_loopback_http, even 127.0.0.1 over http is refused."""
    strict = JwksCache(clock=clock)
    try:
        token = idp.mint_id_jag(aud=AUD, now=clock.now())
        assert await refusal(token, trust=trust, cache=strict, clock=clock) == "invalid_signature"
    finally:
        await strict.close()
    assert idp.jwks_requests == 0


async def test_keys_unusable_for_signatures_are_not_used(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """A key published with `use: enc` does not verify tokens, even with a matching kid."""
    enc_only = ProviderKey.generate()
    idp.extra_jwks.append(enc_only.jwk(use="enc"))
    token = idp.mint_id_jag(aud=AUD, now=clock.now(), key=enc_only)
    assert await refusal(token, trust=trust, cache=cache, clock=clock) == "invalid_signature"
    assert idp.jwks_requests == 1


async def test_issuer_removed_from_trust_is_refused_despite_cached_keys(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """Cached keys do not outlive trust: once the entry goes, its tokens are invalid_issuer."""
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    trust.remove(idp.issuer)
    token = idp.mint_id_jag(aud=AUD, now=clock.now())
    assert await refusal(token, trust=trust, cache=cache, clock=clock) == "invalid_issuer"
    assert idp.jwks_requests == 1


async def test_logout_tokens_use_the_same_cached_keys(
    idp: IdentityProvider, cache: JwksCache, trust: TrustList, clock: ManualClock
) -> None:
    """A logout token after an ID-JAG from the same provider needs no new fetch."""
    await verify(idp.mint_id_jag(aud=AUD, now=clock.now()), trust=trust, cache=cache, clock=clock)
    logout = await verify_logout_token(
        idp.mint_logout_token(aud=AUD, now=clock.now()),
        trust=trust,
        keys=cache,
        audience=AUD,
        events_supported=[REVOKED_EVENT],
        now=clock.now(),
    )
    assert (logout.issuer, logout.event) == (idp.issuer, REVOKED_EVENT)
    assert idp.jwks_requests == 1
