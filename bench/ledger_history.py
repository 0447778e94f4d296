"""A realistic ledger history, generated fast: what bench/ledger_1m.py loads and measures.

Stories start every few seconds of simulated time; each schedules its appends ahead on a heap
ordered by recorded time, so streams interleave in the log as they would live:

* anonymous registration (its key issued), claimed minutes later by an email (attempt, code,
  sometimes a wrong code, claim, the key re-scoped, the user created on a first claim), or
  left to expire after its TTL (registration.expired + the key revoked, by the worker);
* verified-email registration: attempt, code, claim, a new credential for the user;
* ID-JAG use through one of 20 trusted providers: a delegation created on a subject's first
  use (a user provisioned), used, a credential issued;
* access tokens expire after an hour: credential.expired, dated at its deadline and recorded
  by the worker a little later (so occurred-at is not monotonic in the log, as live);
* a provider's logout (delegation.revoked + every active credential of it revoked); an
  operator revoking one credential; now and then a provider's terms updated.

Payloads are the catalogue's events (events/ledger.py), so the projections and the audit fold
them as live ones; hashes come from `events.appends.record`, the writer's own step, so the
chain verifies. Personal fields are fake sealed strings (`pii1.<subject>.…`, no key exists).
"""

from __future__ import annotations

import base64
import heapq
import itertools
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from events.appends import record
from events.catalogue import Event
from events.credential import CredentialExpired, CredentialIssued, CredentialRescoped
from events.credential import CredentialRevoked as Revoked
from events.delegation import DelegationCreated, DelegationRevoked, DelegationUsed
from events.envelope import Metadata, RecordedEvent, StreamRef
from events.hashchain import GENESIS
from events.issuer import IssuerTrusted, IssuerUpdated
from events.ledger import LEDGER
from events.registration import (
    ClaimAttemptStarted,
    OtpFailed,
    OtpIssued,
    RegistrationClaimed,
    RegistrationCreated,
    RegistrationExpired,
)
from events.user import UserCreated
from service.domain.trust_list import issuer_stream_id

TENANT = "default"
START = datetime(2026, 10, 1, tzinfo=UTC)
AUDIENCE = "https://auth.example.com"
PRE, POST = ("api.read",), ("api.read", "api.write")
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
Part = tuple[StreamRef, Event]


class Append(NamedTuple):
    """One append: its parts, why and by whom, and when it happened (default: when recorded,
    except for the worker's expiries, dated at their deadline)."""

    metadata: Metadata
    parts: list[Part]
    occurred_at: datetime | None = None


Step = Callable[[datetime], Append]


def token(prefix: str, nbytes: int = 16) -> str:
    return prefix + base64.urlsafe_b64encode(os.urandom(nbytes)).rstrip(b"=").decode()


def _hex() -> str:
    return os.urandom(32).hex()


def _sealed(subject: str) -> str:
    return f"pii1.{subject}.{token('', 34)}"


@dataclass
class Delegation:
    delegation_id: str
    user_id: str
    issuer: str
    active: list[str] = field(default_factory=list)


@dataclass
class World:
    """The schedule, and what the stories share: users by address, providers, live keys."""

    rng: random.Random
    heap: list[tuple[datetime, int, Step]] = field(default_factory=list)
    seq: Iterator[int] = field(default_factory=itertools.count)
    people: dict[int, str] = field(default_factory=dict)  # address -> user
    issuers: list[str] = field(default_factory=list)
    delegations: dict[tuple[str, int], Delegation] = field(default_factory=dict)
    active: dict[str, Delegation | None] = field(default_factory=dict)  # live credentials

    def at(self, when: datetime, step: Step) -> None:
        heapq.heappush(self.heap, (when, next(self.seq), step))

    @staticmethod
    def stream(kind: str, stream_id: str) -> StreamRef:
        return StreamRef(TENANT, kind, stream_id)

    def meta(self, actor: str, subject: str | None = None) -> Metadata:
        ip = _sealed(subject) if subject is not None else None
        return Metadata(correlation_id=token("req_", 9), actor=actor, client_ip=ip)

    def user_for(self, parts: list[Part], via: str | None = None) -> str:
        """A user by address: mostly a new person (one more part), sometimes a known one."""
        if self.people and self.rng.random() < 0.3:
            return self.people[self.rng.randrange(len(self.people))]
        user_id = token("usr_")
        self.people[len(self.people)] = user_id
        created = UserCreated(
            user_id=user_id,
            email_sealed=_sealed(user_id),
            email_index=_hex(),
            email_verified=True,
            created_via=via,
        )
        parts.append((self.stream("user", user_id), created))
        return user_id

    def issue(
        self, parts: list[Part], now: datetime, delegation: Delegation | None = None, **fields: Any
    ) -> str:
        """A credential (an hour's access token or an API key; anonymous: a pre-claim key that
        lives as long as its registration), an access token's expiry scheduled."""
        credential_id = token("cred_")
        expires = fields.pop("expires_at", None)
        kind: Literal["api_key", "access_token"] = "api_key"
        if fields["issued_via"] != "anonymous" and self.rng.random() < 0.6:
            kind, expires = "access_token", now + HOUR
        issued = CredentialIssued(
            credential_id=credential_id, kind=kind, token_hash=_hex(), expires_at=expires, **fields
        )
        parts.append((self.stream("credential", credential_id), issued))
        self.active[credential_id] = delegation
        if delegation is not None:
            delegation.active.append(credential_id)
        if kind == "access_token" and expires is not None:
            self.at(
                expires + timedelta(seconds=self.rng.uniform(0.5, 60)),
                self._expire(credential_id, expires),
            )
        return credential_id

    def end(self, credential_id: str) -> bool:
        """Whether the credential was still active (it is not from now on)."""
        if credential_id not in self.active:
            return False
        delegation = self.active.pop(credential_id)
        if delegation is not None:
            delegation.active.remove(credential_id)
        return True

    def _expire(self, credential_id: str, deadline: datetime) -> Step:
        def step(_: datetime) -> Append:
            if not self.end(credential_id):
                return Append(Metadata(), [])
            expired = (self.stream("credential", credential_id), CredentialExpired())
            return Append(Metadata(actor="worker:expiry"), [expired], deadline)

        return step


def anonymous(w: World, now: datetime) -> None:
    reg, ttl = token("reg_"), 24 * HOUR
    holder: list[str] = []

    def created(now: datetime) -> Append:
        parts: list[Part] = []
        key = w.issue(
            parts,
            now,
            scopes=PRE,
            issued_via="anonymous",
            registration_id=reg,
            expires_at=now + ttl,
        )
        holder.append(key)
        event = RegistrationCreated(
            registration_id=reg,
            kind="anonymous",
            requested_credential_type="api_key",
            claim_token_hash=_hex(),
            expires_at=now + ttl,
            pre_claim_scopes=PRE,
            post_claim_scopes=POST,
            credential_id=key,
        )
        return Append(w.meta("agent", reg), [(w.stream("registration", reg), event), *parts])

    w.at(now, created)
    if w.rng.random() < 0.4:  # never claimed: the expiry worker ends it a little late
        late = timedelta(seconds=w.rng.uniform(1, 90))
        w.at(now + ttl + late, _expired(w, reg, holder, now + ttl))
    else:
        _claim(w, reg, token("cla_"), now + MINUTE * w.rng.uniform(1, 30), holder, start=True)


def verified_email(w: World, now: datetime) -> None:
    reg, attempt = token("reg_"), token("cla_")

    def created(now: datetime) -> Append:
        event = RegistrationCreated(
            registration_id=reg,
            kind="verified_email",
            requested_credential_type="access_token",
            claim_token_hash=_hex(),
            expires_at=now + DAY,
            pre_claim_scopes=(),
            post_claim_scopes=POST,
        )
        stream = w.stream("registration", reg)
        return Append(
            w.meta("agent", reg), [(stream, event), (stream, _started(reg, attempt, now))]
        )

    w.at(now, created)
    if w.rng.random() < 0.25:
        late = timedelta(seconds=w.rng.uniform(1, 90))
        w.at(now + DAY + late, _expired(w, reg, [], now + DAY))
    else:
        _claim(w, reg, attempt, now, None, start=False)


def _expired(w: World, reg: str, holder: list[str], deadline: datetime) -> Step:
    def step(_: datetime) -> Append:
        parts: list[Part] = [(w.stream("registration", reg), RegistrationExpired(reason="ttl"))]
        if holder and w.end(holder[0]):
            parts.append(
                (w.stream("credential", holder[0]), Revoked(reason="registration_expired"))
            )
        return Append(Metadata(actor="worker:expiry"), parts, deadline)

    return step


def _started(reg: str, attempt: str, now: datetime) -> ClaimAttemptStarted:
    return ClaimAttemptStarted(
        attempt_id=attempt,
        attempt_token_hash=_hex(),
        email_sealed=_sealed(reg),
        email_index=_hex(),
        link_expires_at=now + 10 * MINUTE,
    )


def _claim(
    w: World, reg: str, attempt: str, when: datetime, holder: list[str] | None, *, start: bool
) -> None:
    stream = w.stream("registration", reg)
    if start:
        w.at(
            when, lambda now: Append(w.meta("agent", reg), [(stream, _started(reg, attempt, now))])
        )
    when += MINUTE * w.rng.uniform(0.5, 5)
    w.at(
        when,
        lambda now: Append(
            w.meta("user", reg),
            [
                (
                    stream,
                    OtpIssued(attempt_id=attempt, otp_hash=_hex(), expires_at=now + 10 * MINUTE),
                )
            ],
        ),
    )
    if w.rng.random() < 0.1:
        when += MINUTE
        failed = OtpFailed(attempt_id=attempt, reason="mismatch")
        w.at(when, lambda _: Append(w.meta("agent", reg), [(stream, failed)]))

    def claimed(now: datetime) -> Append:
        parts: list[Part] = []
        user_id = w.user_for(parts)
        if holder:
            credential_id = holder[0]
            rescoped = CredentialRescoped(scopes=POST, user_id=user_id)
            parts.append((w.stream("credential", credential_id), rescoped))
        else:
            credential_id = w.issue(
                parts,
                now,
                scopes=POST,
                issued_via="verified_email",
                registration_id=reg,
                user_id=user_id,
            )
        done = RegistrationClaimed(attempt_id=attempt, user_id=user_id, credential_id=credential_id)
        return Append(w.meta("agent", reg), [(stream, done), *parts])

    w.at(when + MINUTE * w.rng.uniform(0.5, 3), claimed)


def id_jag(w: World, now: datetime) -> None:
    issuer = w.rng.choice(w.issuers)
    subject = int(w.rng.paretovariate(1.1)) % 20_000

    def used(now: datetime) -> Append:
        parts: list[Part] = []
        delegation = w.delegations.get((issuer, subject))
        if delegation is None:
            user_id = w.user_for(parts, via=issuer)
            delegation = Delegation(token("dlg_", 11), user_id, issuer)
            w.delegations[issuer, subject] = delegation
            parts.append(
                (
                    w.stream("delegation", delegation.delegation_id),
                    DelegationCreated(
                        delegation_id=delegation.delegation_id,
                        issuer=issuer,
                        audience=AUDIENCE,
                        subject_sealed=_sealed(user_id),
                        user_id=user_id,
                        matched_by="provisioned",
                    ),
                )
            )
        mine: list[Part] = []
        credential_id = w.issue(
            mine,
            now,
            delegation,
            scopes=POST,
            issued_via="id_jag",
            registration_id=token("reg_", 11),
            user_id=delegation.user_id,
            issuer=issuer,
            delegation_id=delegation.delegation_id,
        )
        use = DelegationUsed(credential_id=credential_id, jti=token("", 12), client_id=issuer)
        parts += [(w.stream("delegation", delegation.delegation_id), use), *mine]
        return Append(w.meta("agent", delegation.user_id), parts)

    w.at(now, used)


def logout(w: World, now: datetime) -> None:
    def step(_: datetime) -> Append:
        live = [d for d in itertools.islice(reversed(w.delegations.values()), 500) if d.active]
        if not live:
            return Append(Metadata(), [])
        delegation = w.rng.choice(live)
        ended = tuple(c for c in list(delegation.active) if w.end(c))
        revoked = DelegationRevoked(reason="logout", jti=token("", 12), credential_ids=ended)
        parts: list[Part] = [(w.stream("delegation", delegation.delegation_id), revoked)]
        parts += [(w.stream("credential", c), Revoked(reason="logout")) for c in ended]
        return Append(
            Metadata(correlation_id=token("req_", 9), actor=f"provider:{delegation.issuer}"), parts
        )

    w.at(now, step)


def operator(w: World, now: datetime) -> None:
    def step(_: datetime) -> Append:
        recent = list(itertools.islice(reversed(w.active.keys()), 5000))
        if not recent:
            return Append(Metadata(), [])
        credential_id = w.rng.choice(recent)
        w.end(credential_id)
        revoked = Revoked(reason="operator", note="bench: found in a log")
        return Append(w.meta("admin"), [(w.stream("credential", credential_id), revoked)])

    w.at(now, step)


def _once(metadata: Metadata, stream: StreamRef, event: Event) -> Step:
    return lambda _: Append(metadata, [(stream, event)])


def provider_terms(w: World, now: datetime) -> None:
    issuer = w.rng.choice(w.issuers)
    updated = IssuerUpdated(
        issuer=issuer,
        algorithms=("ES256", "EdDSA"),
        display_name=f"Provider {w.rng.randrange(100)}",
    )
    stream = w.stream("issuer", issuer_stream_id(issuer))
    w.at(now, _once(w.meta("admin"), stream, updated))


STORIES = (
    (anonymous, 0.34),
    (verified_email, 0.22),
    (id_jag, 0.38),
    (logout, 0.02),
    (operator, 0.035),
    (provider_terms, 0.005),
)


def history(count: int, *, seed: int = 7) -> Iterator[RecordedEvent]:
    """About `count` events (whole appends: a few more), positions 1…, hashed as the writer
    hashes them."""
    w = World(random.Random(seed))
    stories, weights = zip(*STORIES, strict=True)
    versions: dict[str, int] = {}
    prev, position, clock = GENESIS, 0, START
    for n in range(20):
        issuer = f"https://provider-{n}.example"
        w.issuers.append(issuer)
        trusted = IssuerTrusted(issuer=issuer, algorithms=("ES256",), display_name=f"P{n}")
        w.at(clock, _once(w.meta("admin"), w.stream("issuer", issuer_stream_id(issuer)), trusted))
    while position < count:
        if not w.heap or clock <= w.heap[0][0]:
            w.rng.choices(stories, weights)[0](w, clock)
            clock += timedelta(seconds=w.rng.expovariate(1 / 2.5))
            continue
        when, _, step = heapq.heappop(w.heap)
        append = step(when)
        recorded_at = when + timedelta(microseconds=w.rng.randrange(200, 5000))
        for stream, event in append.parts:
            position += 1
            version = versions.get(stream.stream_id, 0) + 1
            versions[stream.stream_id] = version
            new = LEDGER.new(
                event, occurred_at=append.occurred_at or when, metadata=append.metadata
            )
            recorded = record(prev, position, stream, version, new, recorded_at=recorded_at)
            prev = recorded.hash
            yield recorded


def row(event: RecordedEvent) -> tuple[Any, ...]:
    """The event as a row of `events`, for COPY."""
    return (
        event.position,
        event.event_id,
        event.tenant_id,
        event.stream_type,
        event.stream_id,
        event.stream_version,
        event.type,
        event.schema_version,
        event.occurred_at,
        event.recorded_at,
        event.payload.decode(),
        event.metadata.decode(),
        event.hash,
    )


COLUMNS = (
    "position",
    "event_id",
    "tenant_id",
    "stream_type",
    "stream_id",
    "stream_version",
    "type",
    "schema_version",
    "occurred_at",
    "recorded_at",
    "payload",
    "metadata",
    "hash",
)
