"""The checkpoint worker's cadence from AUTHLEDGER_CHECKPOINT_EVERY / _MINUTES, where it
publishes (AUTHLEDGER_CHECKPOINT_STREAM / _SUBJECT) and the keys `audit verify` pins
(AUTHLEDGER_AUDIT_KEYS), checked at start-up like every other setting; the worker refuses to
run without a key to sign with."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest

from service.settings import ConfigError, Settings
from workers.checkpoints import checkpoint_worker

BASE = {"AUTHLEDGER_DATABASE_URL": "postgresql://db/x"}


def test_defaults_are_a_thousand_events_or_five_minutes() -> None:
    settings = Settings.from_env(BASE, "audit")
    assert (settings.checkpoint_every, settings.checkpoint_minutes) == (1000, 5)


def test_both_are_read() -> None:
    env = {**BASE, "AUTHLEDGER_CHECKPOINT_EVERY": "250", "AUTHLEDGER_CHECKPOINT_MINUTES": "1"}
    settings = Settings.from_env(env, "audit")
    assert (settings.checkpoint_every, settings.checkpoint_minutes) == (250, 1)


def test_the_checkpoint_stream_follows_the_event_stream_unless_named() -> None:
    settings = Settings.from_env(BASE, "audit")
    assert (settings.checkpoint_stream, settings.checkpoint_subject, settings.audit_keys) == (
        "AUTHLEDGER_CHECKPOINTS",
        "authledger-checkpoints",
        None,
    )
    env = {**BASE, "AUTHLEDGER_NATS_STREAM": "LEDGER", "AUTHLEDGER_NATS_SUBJECT_PREFIX": "acme"}
    derived = Settings.from_env(env, "audit")
    assert (derived.checkpoint_stream, derived.checkpoint_subject) == (
        "LEDGER_CHECKPOINTS",
        "acme-checkpoints",
    )
    named = {**env, "AUTHLEDGER_CHECKPOINT_STREAM": "ANCHORS",
             "AUTHLEDGER_CHECKPOINT_SUBJECT": "anchors"}  # fmt: skip
    chosen = Settings.from_env(named, "audit")
    assert (chosen.checkpoint_stream, chosen.checkpoint_subject) == ("ANCHORS", "anchors")


def test_audit_keys_are_a_file_or_a_url(tmp_path: Path) -> None:
    pinned = tmp_path / "pinned.jwks"
    pinned.write_text('{"keys": []}')
    for value in (str(pinned), "https://auditor.example/authledger.jwks"):
        env = {**BASE, "AUTHLEDGER_AUDIT_KEYS": value}
        assert Settings.from_env(env, "audit").audit_keys == value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHECKPOINT_EVERY", "0"),
        ("CHECKPOINT_EVERY", "ten"),
        ("CHECKPOINT_MINUTES", "1441"),
        ("CHECKPOINT_STREAM", "AUTHLEDGER"),  # the event stream's own name
        ("CHECKPOINT_SUBJECT", "authledger.checkpoints"),  # inside the event stream's subjects
        ("AUDIT_KEYS", "/no/such/file.jwks"),
        ("AUDIT_KEYS", "ftp://keys.example/jwks"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^AUTHLEDGER_{name}: "):
        Settings.from_env({**BASE, f"AUTHLEDGER_{name}": value}, "audit")


def test_the_worker_needs_the_secret_key() -> None:
    settings = Settings(database_url="postgresql://db/x", nats_url="")
    with pytest.raises(ConfigError, match=r"^AUTHLEDGER_SECRET_KEY: "):
        checkpoint_worker(settings, cast(asyncpg.Pool, None)).close()
    keyed = Settings(database_url="", nats_url="", secret_key="s" * 40)
    ready: Coroutine[Any, Any, None] = checkpoint_worker(keyed, cast(asyncpg.Pool, None))
    ready.close()  # built, never started
