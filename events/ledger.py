"""The catalogue of every event authledger records."""

from __future__ import annotations

from events.access import ACCESS_EVENTS
from events.catalogue import Catalogue
from events.credential import CREDENTIAL_EVENTS
from events.delegation import DELEGATION_EVENTS
from events.issuer import ISSUER_EVENTS
from events.registration import REGISTRATION_EVENTS
from events.subscription import SUBSCRIPTION_EVENTS
from events.tenant import TENANT_EVENTS
from events.user import USER_EVENTS
from events.versions import UPCASTERS

LEDGER = Catalogue(
    *REGISTRATION_EVENTS,
    *CREDENTIAL_EVENTS,
    *USER_EVENTS,
    *ISSUER_EVENTS,
    *DELEGATION_EVENTS,
    *SUBSCRIPTION_EVENTS,
    *TENANT_EVENTS,
    *ACCESS_EVENTS,
    upcasters=UPCASTERS,
)
