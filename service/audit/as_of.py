"""A subject's state as of an instant or a log position: "which credentials could act for user
U on 2026-11-01T10:00Z, with which scopes, and through which provider?"

Semantics (service.audit.subjects.Bound):

- `at=T` folds the subject's events that had *occurred* by T (occurred_at <= T), in log order.
  Occurred-at is when a fact became true: an expiry the worker recorded late is dated at its
  deadline, so it counts from then; a revocation recorded after T does not. (A cut of the log
  at "the last position recorded by T" would count late-dated facts too late.)
- `position=n` folds the events the log held once it reached position n: what the service
  knew then. Both together: what the log at n said about instant T.
- A credential could act at T when it was issued, not revoked or expired by then, and its own
  `expires_at` is after T (a deadline passes whether or not the worker recorded it yet). With
  only a position, T is when the log reached it (its recorded-at); with neither, now.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from events.sql import Conn
from service.audit.folds import Folded, fold_all
from service.audit.subjects import Bound, Subject, instant_of, read, streams
from service.domain.credentials import Credential
from service.domain.registration import Registration

OPEN = ("unclaimed", "pending_claim")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def credential_view(c: Credential, instant: datetime) -> dict[str, Any]:
    return {
        "credential_id": c.credential_id,
        "kind": c.kind,
        "usable": c.usable(instant),
        "status": c.status,
        "scopes": list(c.scopes),
        "issued_via": c.issued_via,
        "registration_id": c.registration_id if c.issued_via != "id_jag" else None,
        "user_id": c.user_id,
        "issuer": c.issuer,
        "delegation_id": c.delegation_id,
        "issued_at": _iso(c.issued_at),
        "expires_at": _iso(c.expires_at),
        "ended_at": _iso(c.ended_at),
        "end_reason": c.end_reason,
        "version": c.version,
    }


def registration_view(r: Registration, instant: datetime) -> dict[str, Any]:
    lapsed = r.status in OPEN and instant >= r.expires_at  # past its TTL, recorded or not
    attempt = r.attempt
    return {
        "registration_id": r.registration_id,
        "kind": r.kind,
        "status": "expired" if lapsed else r.status,
        "expires_at": _iso(r.expires_at),
        "credential_id": r.credential_id,
        "user_id": r.user_id,
        "misses": r.misses,
        "attempt": None
        if attempt is None
        else {
            "attempt_id": attempt.attempt_id,
            "status": attempt.status,
            "link_expires_at": _iso(attempt.link_expires_at),
            "codes_minted": attempt.mints,
            "code_misses": attempt.otp_misses,
        },
        "version": r.version,
    }


def _users(folded: Folded) -> list[dict[str, Any]]:
    return [
        {
            "user_id": u.user_id,
            "created_at": _iso(u.created_at),
            "created_via": u.created_via,
            "email_verified": u.email_verified,
            "phone_verified": u.phone_verified,
            "erased": u.erased_at is not None,
            "erased_at": _iso(u.erased_at),
        }
        for u in folded.users.values()
    ]


def _delegations(folded: Folded) -> list[dict[str, Any]]:
    return [
        {
            "delegation_id": state.delegation_id,
            "issuer": facts.issuer,
            "user_id": state.user_id,
            "matched_by": facts.matched_by,
            "revoked": state.revoked,
            "created_at": _iso(facts.created_at),
            "uses": facts.uses,
            "last_used_at": _iso(facts.last_used_at),
            "revoked_at": _iso(facts.revoked_at),
        }
        for state, facts in folded.delegations.values()
    ]


def _issuers(folded: Folded) -> list[dict[str, Any]]:
    return [
        {
            "issuer": state.entry.issuer,
            "trusted": state.trusted,
            "since": _iso(since),
            "jwks_uri": state.entry.jwks_uri,
            "algorithms": list(state.entry.algorithms),
            "display_name": state.entry.display_name,
            "link_by_verified_email": state.entry.link_by_verified_email,
            "client_ids": list(state.entry.client_ids),
            "required_amr": list(state.entry.required_amr),
            "version": state.version,
        }
        for state, since in folded.issuers.values()
    ]


def render(subject: Subject, bound: Bound, instant: datetime, folded: Folded) -> dict[str, Any]:
    credentials = [credential_view(c, instant) for c in folded.credentials.values()]
    registrations = [registration_view(r, instant) for r in folded.registrations.values()]
    sections: dict[str, list[dict[str, Any]]] = {
        "registration": registrations,
        "credential": credentials,
        "user": _users(folded),
        "delegation": _delegations(folded),
        "issuer": _issuers(folded),
    }
    key = {
        "registration": "registration_id",
        "credential": "credential_id",
        "user": "user_id",
        "delegation": "delegation_id",
        "issuer": "issuer",
    }
    own_id = subject.issuer if subject.kind == "issuer" else subject.id
    own = next((s for s in sections[subject.kind] if s[key[subject.kind]] == own_id), None)
    answer: dict[str, Any] = {
        "subject": subject.as_json(),
        "as_of": {
            **bound.as_json(),
            "instant": _iso(instant),
            "last_position": folded.last_position,
        },
        subject.kind: own,
        "could_act": [c for c in credentials if c["usable"]],
        "credentials": credentials,
        "registrations": registrations,
        "users": sections["user"],
        "delegations": sections["delegation"],
        "issuers": sections["issuer"],
    }
    if subject.kind == "credential" and own is not None:  # and the registration it came from
        answer["registration"] = next(
            (r for r in registrations if r["registration_id"] == own["registration_id"]), None
        )
    if folded.anomalies:
        answer["anomalies"] = folded.anomalies
    return answer


async def state(db: Conn, subject: Subject, bound: Bound, *, now: datetime) -> dict[str, Any]:
    """The subject's state within `bound` (see the module docstring), as JSON-ready data."""
    events = await read(db, subject.tenant_id, await streams(db, subject), bound)
    instant = await instant_of(db, bound, now)
    return render(subject, bound, instant, fold_all(events))
