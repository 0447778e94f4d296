"""Attack (issue 12, finding 9, one item): a deployment started from compose.yaml without
changing its secrets signs tokens and wraps data keys with a key anyone can read in the
repository. `serve` and `worker` now refuse the placeholders with one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import ConfigError, Settings

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"
GOOD = {
    "AUTHLEDGER_DATABASE_URL": "postgresql://app@db.internal:5432/authledger",
    "AUTHLEDGER_NATS_URL": "nats://nats.internal:4222",
    "AUTHLEDGER_ADMIN_TOKEN": "a" * 24,
    "AUTHLEDGER_SECRET_KEY": "s" * 40,
}


def _compose_default(name: str) -> str:
    """The placeholder compose.yaml falls back to for `name`."""
    found = re.search(rf"{name}: \$\{{{name}:-([^}}]+)\}}", COMPOSE.read_text())
    assert found is not None, f"compose.yaml gives no default for {name}"
    return found.group(1)


@pytest.mark.parametrize("name", ["AUTHLEDGER_ADMIN_TOKEN", "AUTHLEDGER_SECRET_KEY"])
@pytest.mark.parametrize("mode", ["serve", "worker"])
def test_the_compose_placeholders_are_refused(name: str, mode: str) -> None:
    """Each of compose.yaml's two placeholder secrets stops serve and worker, naming it."""
    placeholder = _compose_default(name)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**GOOD, name: placeholder}, mode)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"{name}: ")
    assert "placeholder" in message
    assert placeholder not in message  # a secret, even a bad one, is not echoed


def test_a_real_secret_of_the_same_length_is_taken() -> None:
    """Only the placeholders are refused, not long secrets in general."""
    settings = Settings.from_env(
        {**GOOD, "AUTHLEDGER_SECRET_KEY": "x1" * 21, "AUTHLEDGER_ADMIN_TOKEN": "y2" * 13}, "serve"
    )
    assert settings.secret_key == "x1" * 21
