"""How older versions of the ledger's events are read today: one upcaster per version step.

Stored rows are never rewritten (the hash chain covers their bytes); each step lifts a payload
by one version on read. A new version of an event adds its step here, with a test that reads
rows of the old version (tests/integration/test_schema_evolution.py).
"""

from __future__ import annotations

from events.upcasters import Payload, Upcasters

UPCASTERS = Upcasters()


@UPCASTERS.register("credential.issued", 1)
def _credential_issued_v1(payload: Payload) -> Payload:
    """v1 → v2: no provider and no delegation (only anonymous and email credentials had v1)."""
    return {**payload, "issuer": None, "delegation_id": None}
