"""The checkpoint worker's cadence from AUTHLEDGER_CHECKPOINT_EVERY / _MINUTES, checked at
start-up like every other setting; the worker refuses to run without a key to sign with."""

from __future__ import annotations

from collections.abc import Coroutine
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


@pytest.mark.parametrize(
    ("name", "value"),
    [("CHECKPOINT_EVERY", "0"), ("CHECKPOINT_EVERY", "ten"), ("CHECKPOINT_MINUTES", "1441")],
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
