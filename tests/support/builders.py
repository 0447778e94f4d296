"""Shared builders: a small catalogue of sample events and quick ways to append them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from events.catalogue import Catalogue, Event
from events.envelope import Metadata, NewEvent, StreamRef
from events.ids import random_token
from events.upcasters import Upcasters


class ThingOpened(Event, frozen=True, kw_only=True, tag="thing.opened"):
    name: str


class ThingRenamed(Event, frozen=True, kw_only=True, tag="thing.renamed"):
    schema_version: ClassVar[int] = 2
    name: str
    reason: str


sample_upcasters = Upcasters()


@sample_upcasters.register("thing.renamed", 1)
def _renamed_v1(payload: dict[str, object]) -> dict[str, object]:
    return {**payload, "reason": "unspecified"}


SAMPLE = Catalogue(ThingOpened, ThingRenamed, upcasters=sample_upcasters)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def a_stream(tenant: str = "acme") -> StreamRef:
    return StreamRef(tenant, "thing", random_token("thg_", 12))


def opened(name: str = "first", *, actor: str | None = None) -> NewEvent:
    return SAMPLE.new(ThingOpened(name=name), occurred_at=NOW, metadata=Metadata(actor=actor))
