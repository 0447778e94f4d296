"""Security issue 12 ("Also"): a leaked AUTHLEDGER_SECRET_KEY must stop opening the data once
it is rotated, and the rotation must lose nothing.

Before, there was no way to change the secret: every key and sealed value was bound to it, so
a leaked secret opened the personal data and forged tokens for as long as the database lived.
After, `authledger rotate-secret` moves everything to a new secret in one transaction: what
was sealed before opens with the new secret only, the audit timeline still shows it, erasure
by e-mail still finds the person (the blind index key is retained), and a process started
with the old secret is refused.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from cryptography.exceptions import InvalidTag

from service.crypto.pii import Sealer, SealError
from service.crypto.secret_keys import load_server_keys
from service.crypto.signing import KeyRing
from service.crypto.tokens import new_attempt_id, new_attempt_token, new_registration_id
from service.mail.outbox import claim_mail_write, open_link_token
from service.push.secrets import open_secret, seal_secret
from service.runtime.resources import Resources
from service.settings import ConfigError
from tests.e2e.test_no_plaintext import _ceremony
from tests.support.app_client import (
    ADMIN_TOKEN,
    CLIENT_IP,
    SECRET_KEY,
    Service,
    running_service,
    settings_for,
)
from tests.support.backends import Backend
from tests.support.serve_process import AUTHLEDGER, authledger_env

OLD, NEW = SECRET_KEY, "n3w-" + "s" * 44
EMAIL = "rosa.rotated@example.net"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def rotate_secret(owner_url: str, new_key_file: Path) -> tuple[int, str, str]:
    """`authledger rotate-secret`, as the owner role (it rewrites keys the runtime may not)."""
    env = authledger_env(AUTHLEDGER_OWNER_DATABASE_URL=owner_url, AUTHLEDGER_SECRET_KEY=OLD)
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER, "rotate-secret", "--new-key-file", str(new_key_file), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def a_claimed_person(svc: Service) -> tuple[str, str, str]:
    """An anonymous agent claimed by EMAIL: its key, its registration and the person's id."""
    anonymous = await svc.anonymous()
    code = await _ceremony(svc, anonymous["claim_token"], EMAIL, 1)
    done = await svc.client.post(
        "/agent/auth/claim/complete", json={"claim_token": anonymous["claim_token"], "otp": code}
    )
    assert done.status_code == 200, done.text
    key: str = anonymous["credential"]
    me = (await svc.client.get("/api/me", headers={"Authorization": f"Bearer {key}"})).json()
    return key, str(me["registration_id"]), str(me["user_id"])


async def client_ips(svc: Service, registration_id: str) -> set[str]:
    answer = await svc.client.get(f"/admin/audit/registration/{registration_id}/timeline",
                                  headers=ADMIN)  # fmt: skip
    assert answer.status_code == 200, answer.text
    return {e["client_ip"] for e in answer.json()["entries"] if e["client_ip"] is not None}


async def test_after_rotation_only_the_new_secret_opens_and_nothing_is_lost(
    backend: Backend, database_url: str, owner_database_url: str, tmp_path: Path
) -> None:
    """Seal under the old secret; rotate; the old secret opens nothing and starts nothing; the
    new one serves the same person, keys and queued mail; erasure by e-mail still works."""
    async with running_service(backend, database_url) as svc:
        key, registration_id, user_id = await a_claimed_person(svc)
        assert await client_ips(svc, registration_id) == {CLIENT_IP}
        kids = [k["kid"] for k in (await svc.client.get("/.well-known/jwks.json")).json()["keys"]]
        sealed_email = str((await svc.row("users", "user_id", user_id))["email_sealed"])
    attempt_id = new_attempt_id()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        # queued a second ago: the next service's manual clock starts at a whole second, and a
        # row queued later within that second would not be due by it (the mail then waits)
        now = datetime.now(UTC) - timedelta(seconds=1)
        async with pool.acquire() as conn, conn.transaction():  # a claim mail still queued
            sql, args = claim_mail_write(
                secret_key=OLD,
                tenant_id="default",
                registration_id=new_registration_id(),
                attempt_id=attempt_id,
                recipient_sealed=await Sealer(OLD).seal(conn, attempt_id, EMAIL),
                link_token=(link := new_attempt_token()),
                link_expires_at=now + timedelta(hours=1),
                now=now,
            )
            await conn.execute(sql, *args)
        webhook = seal_secret(await load_server_keys(pool, OLD), "sub_rot", "hook-bearer-secret")
        new_key_file = tmp_path / "new-secret"
        new_key_file.write_text(NEW + "\n")
        status, out, err = await rotate_secret(owner_database_url, new_key_file)
        assert status == 1, "rotated while a session was connected"
        assert "other session" in err
    finally:
        await pool.close()

    status, out, err = await rotate_secret(owner_database_url, new_key_file)
    assert status == 0, err
    assert "rewrapped" in out
    for secret in (OLD, NEW):
        assert secret not in out + err
    again, out_again, err_again = await rotate_secret(
        owner_database_url, new_key_file
    )  # idempotent
    assert again == 0, err_again
    assert "rotated: 0 subject keys, 0 signing keys, 0 queued mails" in out_again

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        with pytest.raises(SealError):
            await Sealer(OLD).open(pool, sealed_email)
        assert await Sealer(await load_server_keys(pool, NEW)).open(pool, sealed_email) == EMAIL
        with pytest.raises(RuntimeError, match="does not unwrap"):
            await KeyRing(OLD).load(pool)
        ring = KeyRing(NEW)
        await ring.load(pool)
        assert [k.kid for k in ring.keys] == kids  # the same keys, rewrapped
        sealed_link = await pool.fetchval(
            "SELECT link_token_sealed FROM mail_outbox WHERE attempt_id = $1", attempt_id
        )
        with pytest.raises(InvalidTag):
            open_link_token(OLD, attempt_id, sealed_link)
        assert open_link_token(NEW, attempt_id, sealed_link) == link
        keys = await load_server_keys(pool, NEW)
        assert open_secret(keys, "sub_rot", webhook) == "hook-bearer-secret"
    finally:
        await pool.close()
    with pytest.raises(ConfigError, match="rotated"):
        await Resources.open(settings_for(backend, database_url, SECRET_KEY=OLD))

    async with running_service(backend, database_url, SECRET_KEY=NEW) as svc:
        assert (
            await svc.client.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        ).status_code == 200
        assert await client_ips(svc, registration_id) == {CLIENT_IP}  # sealed before, opened now
        await svc.sink.wait_for(1)  # the queued mail went out, its link opened with the new key
        assert any(link in m.part("plain") for m in svc.sink.received)
        erased = await svc.client.post("/admin/erasures", json={"email": EMAIL}, headers=ADMIN)
        assert erased.status_code == 200, erased.text
        assert erased.json()["users"] == [user_id]  # the blind index still finds the person
        assert await client_ips(svc, registration_id) == {"erased"}
