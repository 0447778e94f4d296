"""`authledger audit verify` as an auditor runs it: the keys pinned from `authledger audit keys`
(public keys derived from the sealed private keys), and a checkpoint stream of the test's own
(named after its NatsNames, so tests sharing one NATS server never see each other's)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncpg

from service.audit.published import CheckpointStream
from service.audit.signed import Jwk
from service.crypto.signing import KeyRing
from tests.support.nats import NatsNames
from tests.support.serve_process import AUTHLEDGER


def checkpoint_stream(names: NatsNames) -> CheckpointStream:
    """The names `Settings.from_env` derives from the test's stream and subject prefix."""
    return CheckpointStream(f"{names.stream}_CHECKPOINTS", f"{names.subject_prefix}-checkpoints")


def nats_env(nats_url: str, names: NatsNames) -> dict[str, str]:
    """The AUTHLEDGER_* variables that point a process at NATS with the test's own names."""
    return {
        "AUTHLEDGER_NATS_URL": nats_url,
        "AUTHLEDGER_NATS_STREAM": names.stream,
        "AUTHLEDGER_NATS_SUBJECT_PREFIX": names.subject_prefix,
    }


async def run_authledger(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    """The console script: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        AUTHLEDGER,
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def pin_keys(env: Mapping[str, str], path: Path) -> Path:
    """`authledger audit keys -o path`, as an operator hands the auditor the keys to pin."""
    status, _, err = await run_authledger(["audit", "keys", "-o", str(path)], env)
    assert status == 0, err
    return path


async def pinned_keys(pool: asyncpg.Pool, secret_key: str) -> dict[str, Jwk]:
    """In process, what `audit keys` prints: the default tenant's keys, derived, by kid."""
    ring = KeyRing(secret_key)
    await ring.load(pool)
    return {key.kid: key.public_jwk for key in ring.keys}
