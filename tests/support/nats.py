"""Per-test JetStream names, so tests sharing one NATS server never see each other."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class NatsNames:
    stream: str
    subject_prefix: str

    @classmethod
    def unique(cls) -> NatsNames:
        tag = uuid.uuid4().hex[:10]
        return cls(stream=f"AUTHLEDGER_T{tag.upper()}", subject_prefix=f"altest{tag}")
