"""Read model `trusted_issuers`: the trust list as it stands, one row per issuer ever trusted."""

from __future__ import annotations

from typing import Any, assert_never

from events.envelope import RecordedEvent
from events.issuer import IssuerEvent, IssuerRemoved, IssuerTrusted, IssuerUpdated
from events.sql import load_queries

Q = load_queries("projections", "issuers.sql")
Statement = tuple[str, tuple[Any, ...]]


def statement(event: IssuerEvent, recorded: RecordedEvent) -> Statement:
    version, at = recorded.stream_version, recorded.occurred_at
    match event:
        case IssuerTrusted() | IssuerUpdated():
            return Q["trusted"], (
                event.issuer, recorded.tenant_id, recorded.stream_id, event.jwks_uri,
                list(event.algorithms), event.display_name, event.link_by_verified_email,
                list(event.client_ids), list(event.required_amr), version, at,
            )  # fmt: skip
        case IssuerRemoved():
            return Q["removed"], (recorded.tenant_id, event.issuer, version, at)
        case _:
            assert_never(event)
