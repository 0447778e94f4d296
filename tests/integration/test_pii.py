"""Crypto-shredding of personal data against a real Postgres (service/crypto/pii.py)."""

from __future__ import annotations

import asyncio
import re

import asyncpg
import pytest

from events.envelope import Metadata
from events.store import NO_STREAM, EventStore
from service.crypto.pii import (
    Q,
    Sealer,
    SealError,
    SubjectErased,
    decrypt,
    encrypt,
    normalise_email,
    normalise_phone,
    parse,
)
from tests.support.builders import NOW, SAMPLE, ThingOpened, a_stream
from tests.support.waiting import wait_until

SECRET = "k" * 48
EMAIL = "Alice.Liddell+claims@Wonderland.example"


async def table_text(pool: asyncpg.Pool) -> str:
    """Every row of every public table, as Postgres renders it in text (bytea as hex)."""
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    parts = []
    for row in tables:
        text = await pool.fetchval(f'SELECT string_agg(t::text, chr(10)) FROM "{row[0]}" t')
        parts.append(text or "")
    return "\n".join(parts)


async def test_seal_and_open_round_trip(pool: asyncpg.Pool) -> None:
    """A sealed value has the `pii1.<subject>.<blob>` form and opens to the plaintext."""
    sealer = Sealer(SECRET)
    sealed = await sealer.seal(pool, "usr_alice", EMAIL)
    assert re.fullmatch(r"pii1\.usr_alice\.[A-Za-z0-9_-]+", sealed)
    assert EMAIL not in sealed
    assert await sealer.open(pool, sealed) == EMAIL
    assert await Sealer(SECRET).open(pool, sealed) == EMAIL  # fresh cache: key from the table


async def test_ciphertexts_differ_per_seal_and_per_subject(pool: asyncpg.Pool) -> None:
    """The same plaintext seals differently each time and under each subject."""
    sealer = Sealer(SECRET)
    first = await sealer.seal(pool, "usr_a", EMAIL)
    again = await sealer.seal(pool, "usr_a", EMAIL)
    other = await sealer.seal(pool, "usr_b", EMAIL)
    blobs = {parse(s)[1] for s in (first, again, other)}
    assert len(blobs) == 3
    assert await pool.fetchval("SELECT count(*) FROM subject_keys") == 2


def test_a_value_moved_to_another_subject_does_not_authenticate() -> None:
    """The subject id is associated data: relabelling a sealed value fails even with the key."""
    key = bytes(range(32))
    sealed = encrypt(key, "usr_a", EMAIL)
    assert decrypt(key, sealed) == EMAIL
    forged = sealed.replace("pii1.usr_a.", "pii1.usr_b.", 1)
    with pytest.raises(SealError, match="authenticate"):
        decrypt(key, forged)


async def test_relabelled_or_tampered_values_are_refused(pool: asyncpg.Pool) -> None:
    """Opening a value relabelled to another subject, or with a flipped byte, raises."""
    sealer = Sealer(SECRET)
    sealed = await sealer.seal(pool, "usr_a", EMAIL)
    await sealer.seal(pool, "usr_b", "someone else")
    with pytest.raises(SealError):
        await sealer.open(pool, sealed.replace("pii1.usr_a.", "pii1.usr_b.", 1))
    head, blob = sealed.rsplit(".", 1)
    flipped = blob[:-2] + ("A" if blob[-2] != "A" else "B") + blob[-1]
    with pytest.raises(SealError):
        await sealer.open(pool, f"{head}.{flipped}")


@pytest.mark.parametrize("bad", ["", "pii1", "pii1..abc", "pii2.usr_a.AAAA", "pii1.usr_a.!!!"])
async def test_malformed_values_are_refused(pool: asyncpg.Pool, bad: str) -> None:
    """Strings that are not sealed values raise SealError, not something else."""
    with pytest.raises(SealError):
        await Sealer(SECRET).open(pool, bad)


async def test_opening_for_a_subject_without_a_key_raises(pool: asyncpg.Pool) -> None:
    """A well-formed value naming a subject that never had a key is an error, not None."""
    sealed = encrypt(bytes(32), "usr_ghost", EMAIL)
    with pytest.raises(SealError, match="no data key"):
        await Sealer(SECRET).open(pool, sealed)


async def test_a_different_secret_cannot_unwrap_the_keys(pool: asyncpg.Pool) -> None:
    """Data keys are wrapped under the server secret: another secret cannot open anything."""
    sealed = await Sealer(SECRET).seal(pool, "usr_a", EMAIL)
    with pytest.raises(SealError, match="unwrap"):
        await Sealer("x" * 48).open(pool, sealed)


async def test_erase_destroys_one_subject_only(pool: asyncpg.Pool) -> None:
    """After erase the subject's values open to None; other subjects still open."""
    sealer = Sealer(SECRET)
    alice = await sealer.seal(pool, "usr_alice", EMAIL)
    bob = await sealer.seal(pool, "usr_bob", "bob@example.com")
    assert await sealer.open(pool, alice) == EMAIL  # now cached
    await sealer.erase(pool, "usr_alice")
    assert await sealer.open(pool, alice) is None
    assert await Sealer(SECRET).open(pool, alice) is None
    assert await sealer.open(pool, bob) == "bob@example.com"
    row = await pool.fetchrow(
        "SELECT wrapped_key, erased_at FROM subject_keys WHERE subject_id = $1", "usr_alice"
    )
    assert row is not None
    assert row["wrapped_key"] == b""
    assert row["erased_at"] is not None


async def test_erase_is_idempotent_and_final(pool: asyncpg.Pool) -> None:
    """Erasing twice keeps the first time; sealing for an erased subject is refused."""
    sealer = Sealer(SECRET)
    await sealer.seal(pool, "usr_a", EMAIL)
    await sealer.erase(pool, "usr_a", now=NOW)
    await sealer.erase(pool, "usr_a")
    assert await pool.fetchval("SELECT erased_at FROM subject_keys") == NOW
    with pytest.raises(SubjectErased):
        await sealer.seal(pool, "usr_a", EMAIL)
    await sealer.erase(pool, "usr_never_sealed")
    with pytest.raises(SubjectErased):
        await sealer.seal(pool, "usr_never_sealed", EMAIL)


async def test_an_erase_elsewhere_needs_forget(pool: asyncpg.Pool) -> None:
    """Another process's erase is not seen through a warm cache until `forget` is called."""
    here, elsewhere = Sealer(SECRET), Sealer(SECRET)
    sealed = await here.seal(pool, "usr_a", EMAIL)
    assert await here.open(pool, sealed) == EMAIL
    await elsewhere.erase(pool, "usr_a")
    assert await here.open(pool, sealed) == EMAIL  # documented: the announcement is needed
    here.forget("usr_a")
    assert await here.open(pool, sealed) is None


async def test_preload_reads_a_rounds_keys_at_once(pool: asyncpg.Pool, database_url: str) -> None:
    """A mailer's round: the keys of its rows in one read; opening them then needs no
    database (here, a pool already closed), while an erased or unknown subject, or a value
    that does not parse, is left to `open` and answers as before."""
    writer = Sealer(SECRET)
    values = {f"att_{i}": f"person{i}@example.net" for i in range(5)}
    sealed = {s: await writer.seal(pool, s, v) for s, v in values.items()}
    erased = await writer.seal(pool, "att_gone", EMAIL)
    await writer.erase(pool, "att_gone")
    mailer = Sealer(SECRET)
    never = "pii1.att_never." + "A" * 40  # well formed, for a subject with no key
    await mailer.preload(pool, [*sealed.values(), erased, never, "not a sealed value"])
    closed = await asyncpg.create_pool(database_url, min_size=0, max_size=1)
    await closed.close()
    for subject, value in values.items():
        assert await mailer.open(closed, sealed[subject]) == value
    assert await mailer.open(pool, erased) is None
    with pytest.raises(SealError, match="no data key"):
        await mailer.open(pool, never)


async def test_preload_is_planned_for_each_round(pool: asyncpg.Pool) -> None:
    """The key read is planned anew each round, never from a plan Postgres fixed after five
    runs while the table was small (a sequential scan, kept as the table grew). Postgres
    counts the generic and custom plans of each prepared statement a session holds: read
    through the connection's statement cache, the key read held one, with generic plans."""
    mailer = Sealer(SECRET)
    async with pool.acquire() as conn:
        for round_ in range(8):  # past the five custom plans after which a generic may stay
            unknown = [f"pii1.att_{round_}_{n}." + "A" * 40 for n in range(16)]  # never cached
            await mailer.preload(conn, unknown)
        plans = await conn.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            Q["select_keys"],
        )
    assert not [p for p in plans if p["generic_plans"] > 0], plans


async def test_a_rolled_back_key_is_not_cached(pool: asyncpg.Pool) -> None:
    """A key created in a transaction that rolls back is never reused from the cache."""
    sealer = Sealer(SECRET)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        lost = await sealer.seal(conn, "usr_a", EMAIL)
        await sealer.seal(conn, "usr_a", "second value, same transaction")
        await tx.rollback()
    with pytest.raises(SealError, match="no data key"):
        await sealer.open(pool, lost)
    kept = await sealer.seal(pool, "usr_a", EMAIL)
    assert await Sealer(SECRET).open(pool, kept) == EMAIL


async def test_concurrent_first_seals_share_one_key(pool: asyncpg.Pool) -> None:
    """Two connections sealing a new subject at once end up with the one stored key."""
    async with pool.acquire() as first, pool.acquire() as second:
        tx = first.transaction()
        await tx.start()
        a = await Sealer(SECRET).seal(first, "usr_race", "from the first")
        racing = asyncio.create_task(Sealer(SECRET).seal(second, "usr_race", "from the second"))

        async def lock_waiters() -> int | None:
            found = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            return int(found) or None

        waiting = await wait_until(lock_waiters, what="the second insert blocked on the first's")
        assert waiting == 1
        await tx.commit()
        b = await racing
    assert await pool.fetchval("SELECT count(*) FROM subject_keys") == 1
    fresh = Sealer(SECRET)
    assert await fresh.open(pool, a) == "from the first"
    assert await fresh.open(pool, b) == "from the second"


async def test_many_concurrent_first_seals(pool: asyncpg.Pool) -> None:
    """Ten concurrent first seals through the pool store one key and all open."""
    sealed = await asyncio.gather(
        *(Sealer(SECRET).seal(pool, "usr_many", f"v{i}") for i in range(10))
    )
    assert await pool.fetchval("SELECT count(*) FROM subject_keys") == 1
    fresh = Sealer(SECRET)
    assert [await fresh.open(pool, s) for s in sealed] == [f"v{i}" for i in range(10)]


async def test_the_database_holds_no_plaintext(pool: asyncpg.Pool, store: EventStore) -> None:
    """With sealed values in the key table and the log, no table's text holds the plaintext."""
    sealer = Sealer(SECRET)
    ip = "203.0.113.77"
    name = await sealer.seal(pool, "usr_alice", EMAIL)
    client_ip = await sealer.seal(pool, "usr_alice", ip)
    event = SAMPLE.new(
        ThingOpened(name=name), occurred_at=NOW, metadata=Metadata(client_ip=client_ip)
    )
    await store.append(a_stream(), NO_STREAM, [event])
    dump = await table_text(pool)
    assert name in dump  # the scan does see the log
    data_key = await sealer._data_key(pool, "usr_alice", create=False)
    assert data_key is not None
    for secret in (EMAIL, EMAIL.lower(), ip, EMAIL.encode().hex(), ip.encode().hex()):
        assert secret not in dump
    assert data_key.hex() not in dump  # only the wrapped form is stored
    await sealer.erase(pool, "usr_alice")
    assert name in await table_text(pool)  # the event stays; only the key is gone
    assert await sealer.open(pool, name) is None


def test_blind_index_normalises_and_is_keyed() -> None:
    """Equal after normalisation means equal index; another secret or kind gives another."""
    sealer = Sealer(SECRET)
    index = sealer.blind_index(EMAIL)
    assert re.fullmatch("[0-9a-f]{64}", index)
    assert sealer.blind_index(f"  {EMAIL.upper()} ") == index
    assert sealer.blind_index("bob@wonderland.example") != index
    assert Sealer("z" * 48).blind_index(EMAIL) != index
    assert sealer.blind_index("+1 (555) 010-0000", "phone") == sealer.blind_index(
        "+15550100000", "phone"
    )
    assert sealer.blind_index("15550100000", "phone") != sealer.blind_index("+15550100000", "phone")
    assert sealer.blind_index("15550100000", "phone") != sealer.blind_index("15550100000")


def test_normalisation_rules() -> None:
    """E-mails: trimmed, lower-case. Phones: ASCII digits, one leading plus kept."""
    assert normalise_email("  Bob@Example.COM\n") == "bob@example.com"
    assert normalise_phone(" +44 20 7946-0018 ") == "+442079460018"
    assert normalise_phone("(020) 7946 0018") == "02079460018"
