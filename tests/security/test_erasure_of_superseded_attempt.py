"""Attack (issue 12, finding 4): a person asks to be erased, and the erasure misses the claim
attempts that named them before a newer attempt replaced theirs.

Before the fix a registration kept only its current attempt's address index, so erasing by
address found nothing once an agent had started a new attempt for someone else (404): the
earlier attempt's sealed address, its outbox row and the client addresses of its calls stayed
readable. Now every attempt's address index is kept (`attempt_addresses`, migration 0017) and
every attempt seals its address, its mail and its callers' addresses under a key of its own:
the erasure destroys that key, deletes the outbox row, and leaves the registration and the
other person's attempt as they were. Attempts sealed under the registration's key (before
0017) take their registration with them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence

import asyncpg
import httpx
import pytest

from events.hashchain import verify_log
from events.registration import STREAM_TYPE, ClaimAttemptStarted
from events.store import EventStore
from migrations.runner import available
from projections.replay import verify
from service.commands.claim import start_claim
from service.commands.context import Caller, Change, Context
from service.commands.erasure import erase_person
from service.commands.registration import register_anonymous
from service.crypto.pii import Sealer
from service.crypto.tokens import new_attempt_id, new_attempt_token, token_hash
from tests.support.app_client import (
    ADMIN_TOKEN,
    SECRET_KEY,
    Service,
    client_at,
    form_of,
    link_of,
    otp_of,
    running_service,
)
from tests.support.backends import Backend
from tests.support.commands import command_context
from tests.support.serve_process import AUTHLEDGER, SECRETS, authledger_env

FIRST = "ann.first@example.net"  # the address of the attempt that is replaced, then erased
SECOND = "ben.second@example.net"  # another person, whose attempt replaces it
ANN_IP, BEN_IP = "198.51.100.31", "198.51.100.32"  # the two people's browsers
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SEALED = re.compile(r"pii1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_=-]+")
AGENT = Caller(request_id="req-agent", client_ip="203.0.113.9")


@pytest.fixture
async def svc(backend: Backend, database_url: str) -> AsyncIterator[Service]:
    async with running_service(backend, database_url) as running:
        yield running


async def _tables(pool: asyncpg.Pool) -> dict[str, str]:
    """Every public table's rows as text (the log included)."""
    names = [r["tablename"] for r in await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]  # fmt: skip
    return {
        name: await pool.fetchval(
            f"SELECT coalesce(string_agg(t::text, ' '), '') FROM \"{name}\" t"
        )
        for name in names
    }


async def _opened(pool: asyncpg.Pool) -> list[str]:
    """The plain text of every sealed value anywhere in the database that still opens."""
    sealer, found = Sealer(SECRET_KEY), []
    for dump in (await _tables(pool)).values():
        for sealed in set(SEALED.findall(dump)):
            plain = await sealer.open(pool, sealed)
            if plain is not None:
                found.append(plain)
    return found


async def _code_from_browser(svc: Service, browser: httpx.AsyncClient, mail: int) -> str:
    """The person opens mail number `mail`'s link and presses the button (E6, E7)."""
    page = await browser.get(link_of(await svc.mail(mail)))
    assert page.status_code == 200, page.text
    action, field, value = form_of(page.text)
    pressed = await browser.post(action, data={field: value})
    assert pressed.status_code == 200, pressed.text
    return otp_of(pressed.text)


async def _cli(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, *args, env=dict(env), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_erasing_a_replaced_attempts_address_leaves_no_readable_trace(
    svc: Service, backend: Backend, database_url: str, owner_database_url: str
) -> None:
    """Attempt for Ann (she asks for a code from her browser), then a new attempt for Ben
    replaces it; erasing Ann's address destroys her attempt's key and outbox row: no table
    holds her address or her browser's address readable, while Ben's attempt is untouched
    and he still claims; the chain and a rebuild of the read models still verify."""
    registered = await svc.anonymous()
    claim_token = registered["claim_token"]
    for mail, (email, ip) in enumerate(((FIRST, ANN_IP), (SECOND, BEN_IP)), start=1):
        started = await svc.client.post(
            "/agent/auth/claim", json={"claim_token": claim_token, "email": email}
        )
        assert started.status_code == 200, started.text
        async with client_at(svc, backend, database_url, ip) as browser:
            code = await _code_from_browser(svc, browser, mail)
    rid = registered["registration_id"]
    first_attempt, second_attempt = [
        r["attempt_id"]
        for r in await svc.resources.pool.fetch(
            "SELECT payload::jsonb ->> 'attempt_id' AS attempt_id FROM events "
            "WHERE type = 'claim.attempt_started' AND stream_id = $1 ORDER BY position",
            rid,
        )
    ]
    before = await _opened(svc.resources.pool)
    assert {FIRST, SECOND, ANN_IP, BEN_IP} <= set(before)  # the test can see what it checks

    erased = await svc.client.post(
        "/admin/erasures", json={"email": FIRST, "reason": "art. 17"}, headers=ADMIN
    )
    assert erased.status_code == 200, erased.text
    assert erased.json() == {
        "users": [],
        "registrations": [],  # the registration is kept: it is the agent's, and Ben's
        "attempts": [first_attempt],
        "sign_in_links": [],
        "revoked": [],
    }

    pool = svc.resources.pool
    after = await _opened(pool)
    assert FIRST not in after
    assert ANN_IP not in after  # her browser's address, sealed with her attempt's E7 event
    assert {SECOND, BEN_IP} <= set(after)  # Ben's attempt is his own, and untouched
    key = await pool.fetchrow(
        "SELECT length(wrapped_key) AS length, erased_at FROM subject_keys WHERE subject_id = $1",
        first_attempt,
    )
    assert key is not None
    assert (key["length"], key["erased_at"] is not None) == (0, True)
    for name, dump in (await _tables(pool)).items():
        for secret in (FIRST, ANN_IP):
            assert secret not in dump, f"{secret} in plain text in {name}"
    outbox = await pool.fetch("SELECT attempt_id FROM mail_outbox")
    assert [r["attempt_id"] for r in outbox] == [second_attempt]
    addresses = await pool.fetch("SELECT attempt_id FROM attempt_addresses")
    assert [r["attempt_id"] for r in addresses] == [second_attempt]
    timeline = await svc.client.get(f"/admin/audit/registration/{rid}/timeline", headers=ADMIN)
    assert timeline.status_code == 200, timeline.text
    asked = [e["client_ip"] for e in timeline.json()["entries"] if e["type"] == "claim.otp_issued"]
    assert asked == ["erased", BEN_IP]  # Ann's press of the button, then Ben's

    done = await svc.client.post(
        "/agent/auth/claim/complete", json={"claim_token": claim_token, "otp": code}
    )
    assert done.status_code == 200, done.text  # Ben's code still claims: his data is his
    user = await pool.fetchrow("SELECT email_sealed FROM users")
    assert user is not None
    assert await Sealer(SECRET_KEY).open(pool, user["email_sealed"]) == SECOND

    again = await svc.client.post("/admin/erasures", json={"email": FIRST}, headers=ADMIN)
    assert again.status_code == 404  # the address finds no one any more
    assert (await verify_log(svc.resources.store.read_all)).ok
    chain = await svc.client.get("/admin/audit/verify", headers=ADMIN)
    assert (chain.json()["ok"], chain.json()["first_break"]) == (True, None)
    status, out = await _cli(
        ["replay", "--verify"],
        authledger_env(AUTHLEDGER_OWNER_DATABASE_URL=owner_database_url, **SECRETS),
    )
    assert status == 0, out


async def test_an_attempt_sealed_under_its_registration_takes_the_registration(
    store: EventStore, pool: asyncpg.Pool, owner_pool: asyncpg.Pool, owner_database_url: str
) -> None:
    """An attempt started before migration 0017 sealed its address under the registration's
    key: erasing that address, once a newer attempt replaced it, erases the registration as a
    whole (the only key that covers it), yet the newer attempt's own key is kept. Migration
    0017 run on this log gives the rows the projection wrote."""
    ctx: Context = await command_context(store, pool)
    registered = await register_anonymous(ctx, "api_key", AGENT)
    rid, now = registered.registration_id, ctx.clock.now()
    older = ClaimAttemptStarted(
        attempt_id=new_attempt_id(),
        attempt_token_hash=token_hash(new_attempt_token()),
        email_sealed=await ctx.sealer.seal(pool, rid, FIRST),  # as before 0017
        email_index=ctx.sealer.blind_index(FIRST),
        link_expires_at=now,
    )
    await ctx.record(
        [Change(ctx.stream(STREAM_TYPE, rid), 1, [older])], metadata=await ctx.metadata(AGENT, rid),
        now=now,
    )  # fmt: skip
    newer = await start_claim(ctx, registered.claim_token, SECOND, AGENT)

    erased = await erase_person(ctx, AGENT, email=FIRST)
    assert (erased.registrations, erased.attempts) == ((rid,), ())
    sealed = await pool.fetch(
        "SELECT payload::jsonb ->> 'email_sealed' AS sealed FROM events "
        "WHERE type = 'claim.attempt_started' ORDER BY position"
    )
    opened = [await ctx.sealer.open(pool, r["sealed"]) for r in sealed]
    assert opened == [None, SECOND]
    rows = await pool.fetch("SELECT attempt_id, subject_id FROM attempt_addresses")
    assert [(r["attempt_id"], r["subject_id"]) for r in rows] == [
        (newer.claim_attempt_id, newer.claim_attempt_id)
    ]
    attempts = await pool.fetchval(
        "SELECT payload::jsonb ->> 'attempts' FROM events WHERE type = 'registration.erased'"
    )
    assert attempts == "[]"

    [migration] = [m for m in available() if m.version == 17]
    await owner_pool.execute("DROP TABLE attempt_addresses")  # a migration runs as the owner
    await owner_pool.execute(migration.sql)
    assert (await verify(owner_database_url)).differences == []
