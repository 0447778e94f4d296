"""Events of the trust list (stream type `issuer`, id `iss_…` derived from the issuer URL).

An operator trusts an agent provider, changes how far it is trusted, or stops trusting it;
each is an event, so an audit can say who trusted whom, from when, on what terms. The
configuration events carry the whole entry, not a diff: the entry at any position is the last
one before it, which keeps as-of queries a lookup.
"""

from __future__ import annotations

from events.catalogue import Event

STREAM_TYPE = "issuer"


class IssuerTrusted(Event, frozen=True, kw_only=True, tag="issuer.trusted"):
    """Added to the trust list (again, if it had been removed)."""

    issuer: str
    jwks_uri: str | None = None
    algorithms: tuple[str, ...]
    display_name: str | None = None
    link_by_verified_email: bool = True
    client_ids: tuple[str, ...] = ()
    required_amr: tuple[str, ...] = ()


class IssuerUpdated(Event, frozen=True, kw_only=True, tag="issuer.updated"):
    """The entry's new terms, in full."""

    issuer: str
    jwks_uri: str | None = None
    algorithms: tuple[str, ...]
    display_name: str | None = None
    link_by_verified_email: bool = True
    client_ids: tuple[str, ...] = ()
    required_amr: tuple[str, ...] = ()


class IssuerRemoved(Event, frozen=True, kw_only=True, tag="issuer.removed"):
    """No longer trusted: its assertions and logout tokens are refused from now on. What it
    already issued stays valid unless revoked (`authledger revoke --issuer`)."""

    issuer: str
    reason: str | None = None


ISSUER_EVENTS: tuple[type[IssuerEvent], ...] = (IssuerTrusted, IssuerUpdated, IssuerRemoved)
IssuerEvent = IssuerTrusted | IssuerUpdated | IssuerRemoved
