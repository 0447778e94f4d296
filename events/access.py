"""Events of scoped operator credentials (stream type `access`, id `acc_…`).

An operator grants a credential for one surface of the service and later revokes it; each is
an event, so an audit can say who could reach the admin API, introspection, the metrics or
the revocation feed, from when, and who granted it (the envelope's actor and request id).

- `scope` is one of `operator` (every route of every tenant), `tenant_admin` (the admin API
  of one tenant), `introspection` (RFC 7662 for one resource server of one tenant), `metrics`
  (`/metrics`) and `revocation_feed` (`GET /admin/revocations` of one tenant).
- `tenant_id` is the tenant the credential acts in, None for the installation-wide scopes
  (operator, metrics). The stream lives in that tenant (the default tenant when None).
- `client_id` names the resource server of an introspection credential (its RFC 7662 §2.1
  HTTP Basic user name); None for the other scopes.
- Only `token_hash` (SHA-256 of a 256-bit random token) is recorded: the token itself is
  shown once to whoever granted it and is never stored.
"""

from __future__ import annotations

from events.catalogue import Event

STREAM_TYPE = "access"


class AccessGranted(Event, frozen=True, kw_only=True, tag="access.granted"):
    """A scoped credential exists from now on."""

    scope: str
    tenant_id: str | None = None
    client_id: str | None = None
    label: str
    token_hash: str


class AccessRevoked(Event, frozen=True, kw_only=True, tag="access.revoked"):
    """Refused from now on; nothing else changes."""

    reason: str | None = None


ACCESS_EVENTS: tuple[type[AccessEvent], ...] = (AccessGranted, AccessRevoked)
AccessEvent = AccessGranted | AccessRevoked
