"""Security Event Tokens (RFC 8417) telling a subscriber that a credential ended.

Each `credential.revoked` or `credential.expired` of the log becomes, per subscriber, one SET:
a JWS signed by the service's active EdDSA key (the key ring of `service.crypto.signing`, published
at `/.well-known/jwks.json`), with the OpenID CAEP 1.0 `credential-change` event:

    header  {"typ": "secevent+jwt", "alg": "EdDSA", "kid": <thumbprint>}
    claims  {"iss": <our issuer>, "aud": <the subscriber's audience>, "iat": <now>,
             "jti": <per subscriber and log event>, "txn": <the log event's id>,
             "sub_id": <the credential, RFC 9493>,
             "events": {".../caep/event-type/credential-change": {
                 "credential_type": "api_key" | "access_token", "change_type": "revoke",
                 "event_timestamp": <when it ended>, "initiating_entity": ...,
                 "reason_admin": {"en": ...}}}}

Decisions:
- `jti` is derived (UUIDv5) from the subscription id and the log event's id: the same on
  every retry and replay, so a receiver that saw it can drop the copy (RFC 8935 §2.2 has
  receivers detect duplicates by `jti`), yet different for two subscribers, because their
  SETs differ (`aud`). `txn` (RFC 8417 §2.2) is the log event's id, the same for every
  subscriber: it ties the SETs of one revocation together and to the audit log.
- `sub_id` (the top-level subject claim of SSF 1.0) names the credential: an access token by
  `{"format": "jwt_id", "iss", "jti"}` (its `jti` is the credential id), which a resource
  server checking tokens offline can match directly; an API key by `{"format": "opaque",
  "id": <credential id>}`.
- `credential_type` is `api_key` or `access_token`: CAEP lists types for people's
  credentials and allows "any other credential type supported mutually by the Transmitter
  and the Receiver"; ours are these two (documented in the README).
- `change_type` is `revoke` for an expiry too. CAEP's `delete` is a credential removed from
  an account; `revoke` is "stop accepting it", which is what an expired credential asks of a
  receiver that caches introspection answers or keys. The two are told apart by
  `initiating_entity` (`policy` for expiry and for a key ended with its expired
  registration, `admin` for an operator, `system` for a provider's logout token) and by
  `reason_admin`.
- No `exp`: RFC 8417 SETs describe a fact that stays true; receivers dedupe by `jti`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import jwt

from events.credential import CredentialExpired, CredentialRevoked
from events.envelope import RecordedEvent
from events.ledger import LEDGER
from service.crypto.signing import SigningKey

CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
TOKEN_HASH_PREFIX = 16  # as the revocation feed's messages carry it
SET_TYPE = "secevent+jwt"
JTI_NAMESPACE = uuid.UUID("5b3c1d0e-8a8f-4c55-9d3e-2f1f6f0b7a11")  # fixed: jti stability
REASON_ENTITIES = {
    "operator": "admin",
    "registration_expired": "policy",
    "logout": "system",
}
Change = Literal["revoked", "expired"]


@dataclass(frozen=True, slots=True)
class CredentialEnded:
    """A credential-ending event of the log, with what a SET says about it."""

    position: int
    event_id: uuid.UUID
    credential_id: str
    credential_kind: str | None  # `api_key` | `access_token`; None if the log lacks it
    change: Change
    reason: str  # the revocation's reason code, or `expired`
    occurred_at: datetime
    token_hash_prefix: str | None = None  # 16 hex of the bearer value's SHA-256, if known


def credential_ended(
    recorded: RecordedEvent, kind: str | None, token_hash: str | None = None
) -> CredentialEnded:
    """The SET's view of a `credential.revoked` / `credential.expired` record."""
    event = LEDGER.decode(recorded)
    if isinstance(event, CredentialRevoked):
        change: Change = "revoked"
        reason = event.reason
    elif isinstance(event, CredentialExpired):
        change, reason = "expired", "expired"
    else:
        raise TypeError(f"{recorded.type} at {recorded.position} does not end a credential")
    return CredentialEnded(
        position=recorded.position,
        event_id=recorded.event_id,
        credential_id=recorded.stream_id,
        credential_kind=kind,
        change=change,
        reason=reason,
        occurred_at=recorded.occurred_at,
        token_hash_prefix=token_hash[:TOKEN_HASH_PREFIX].lower() if token_hash else None,
    )


def set_jti(subscription_id: str, event_id: uuid.UUID) -> str:
    """32 hex characters, the same for every send of this event to this subscriber."""
    return uuid.uuid5(JTI_NAMESPACE, f"{subscription_id}/{event_id}").hex


def initiating_entity(ended: CredentialEnded) -> str:
    if ended.change == "expired":
        return "policy"
    return REASON_ENTITIES.get(ended.reason, "system")


def subject(ended: CredentialEnded, issuer: str) -> dict[str, str]:
    """RFC 9493 subject identifier of the credential."""
    if ended.credential_kind == "access_token":
        return {"format": "jwt_id", "iss": issuer, "jti": ended.credential_id}
    return {"format": "opaque", "id": ended.credential_id}


def set_claims(
    ended: CredentialEnded, *, issuer: str, audience: str, subscription_id: str, now: datetime
) -> dict[str, Any]:
    what = "expired" if ended.change == "expired" else f"revoked ({ended.reason})"
    return {
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "jti": set_jti(subscription_id, ended.event_id),
        "txn": str(ended.event_id),
        "sub_id": subject(ended, issuer),
        "events": {
            CREDENTIAL_CHANGE: {
                "credential_type": ended.credential_kind or "unknown",
                "change_type": "revoke",
                "event_timestamp": int(ended.occurred_at.timestamp()),
                "initiating_entity": initiating_entity(ended),
                "reason_admin": {"en": f"credential {what}"},
                # An extension member: lets a resource server match the bearer value it holds
                # (an API key's id alone does not); too short to help anyone forge one.
                **({"token_hash_prefix": ended.token_hash_prefix}
                   if ended.token_hash_prefix else {}),
            }
        },
    }  # fmt: skip


def sign_set(claims: dict[str, Any], key: SigningKey) -> str:
    """The compact JWS of `claims`, typed `secevent+jwt` (RFC 8417 §2.3)."""
    headers = {"typ": SET_TYPE, "kid": key.kid}
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=headers)
