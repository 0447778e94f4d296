"""The audit API under /admin/audit, behind an operator credential or a tenant admin one on
its tenant's hosts (service/audit/; the whole chain's verification is the operator's):

- `GET /admin/audit/{kind}/{id}/timeline?after=&limit=&at=&position=`: every event of the
  subject, with time, actor, client IP, reason and correlation (a page; `next_after`);
- `GET /admin/audit/{kind}/{id}/state?at=<ISO instant>&position=<n>`: the subject's state
  then, and which credentials could act (`could_act`);
- `GET /admin/audit/{kind}/{id}/export?at=&position=`: the slice as JSON Lines with its proof
  (`application/jsonl`), anchored by a checkpoint signed on the spot if none follows it yet;
- `GET /admin/audit/verify`: the whole chain and every signed checkpoint, the first break,
  and whether it vouches: only against keys pinned outside the database
  (`AUTHLEDGER_AUDIT_KEYS`) and the newest checkpoint published off it (JetStream).

`kind` is registration, credential, user, delegation or issuer. A provider's id is its
`iss_…` stream id in the path, or its URL as `?issuer=` on `/admin/audit/issuer/{what}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from service.audit.as_of import state
from service.audit.export import MEDIA_TYPE, export
from service.audit.pinned import PinnedKeysError, load_pinned
from service.audit.published import CheckpointStream, Published, read_newest
from service.audit.signed import Jwk
from service.audit.signing_round import sign_now
from service.audit.subjects import Bound, Subject, UnknownSubject, resolve
from service.audit.timeline import DEFAULT_LIMIT, timeline
from service.audit.verify import verify
from service.commands.context import Context
from service.domain.access import ADMIN as ADMIN_SCOPES
from service.domain.access import OPERATOR_ONLY
from service.http.access import ACCEPTS, AccessGate, AdminRefused
from service.http.bodies import POSITION_MAX, json_reply
from service.http.guarded import guarded_router, settings_of
from service.http.route_docs import (
    AUDIT_EXPORT_DOC,
    AUDIT_STATE_DOC,
    AUDIT_TIMELINE_DOC,
    AUDIT_VERIFY_DOC,
)
from service.runtime.resources import Resources
from service.settings import Settings

AUDIT = "/admin/audit"
SUBJECT = AUDIT + "/{kind:str}/{subject_id:str}"
ISSUER = AUDIT + "/issuer"


def bound_of(at: str | None, position: int | None) -> Bound:
    if position is not None and position > POSITION_MAX:  # a bigint in the queries
        raise AdminRefused(400, "invalid_request", "position: past any log position")
    try:
        instant = None if at is None else datetime.fromisoformat(at)
        return Bound(position=position, at=instant)
    except ValueError as exc:
        raise AdminRefused(400, "invalid_request", f"at: {exc}") from None


async def _subject(ctx: Context, kind: str, subject_id: str) -> Subject:
    if not 0 < len(subject_id) <= 2048 or "\x00" in subject_id:  # Postgres text: no NUL
        raise AdminRefused(400, "invalid_request", "the subject id is empty or too long")
    async with ctx.pool.acquire() as conn:
        try:
            return await resolve(conn, ctx.tenant.tenant_id, kind, subject_id)
        except UnknownSubject as exc:
            raise AdminRefused(404, "not_found", str(exc)) from None


async def _timeline(
    ctx: Context, subject: Subject, bound: Bound, after: int, limit: int
) -> Response[bytes]:
    if after > POSITION_MAX:  # a bigint in the query
        raise AdminRefused(400, "invalid_request", "after: past any log position")
    async with ctx.pool.acquire() as conn:
        found = await timeline(conn, subject, bound, sealer=ctx.sealer, after=after, limit=limit)
    return json_reply(found.as_json())


async def _state(ctx: Context, subject: Subject, bound: Bound) -> Response[bytes]:
    async with ctx.pool.acquire() as conn:
        return json_reply(await state(conn, subject, bound, now=ctx.clock.now()))


def _export(ctx: Context, subject: Subject, bound: Bound) -> Stream:
    async def signer() -> object:
        return await sign_now(ctx.pool, ctx.keyring, ctx.clock)

    async def lines() -> AsyncIterator[bytes]:
        async with ctx.pool.acquire() as conn:
            async for line in export(conn, subject, bound, now=ctx.clock.now(), sign_now=signer):
                yield line.encode()

    name = f"audit-{subject.kind}-{subject.id}.jsonl"
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Stream(lines(), media_type=MEDIA_TYPE, headers=disposition)


@get(SUBJECT + "/timeline", summary="A subject's timeline", operation_class=AUDIT_TIMELINE_DOC)
async def subject_timeline(
    ctx: NamedDependency[Context],
    kind: FromPath[str],
    subject_id: FromPath[str],
    *,
    after: FromQuery[int] = 0,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    at: FromQuery[str | None] = None,
    position: FromQuery[int | None] = None,
) -> Response[bytes]:
    subject = await _subject(ctx, kind, subject_id)
    return await _timeline(ctx, subject, bound_of(at, position), after, limit)


@get(ISSUER + "/timeline", summary="A provider's timeline, by its URL",
     operation_class=AUDIT_TIMELINE_DOC)  # fmt: skip
async def issuer_timeline(
    ctx: NamedDependency[Context],
    issuer: FromQuery[str],
    *,
    after: FromQuery[int] = 0,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    at: FromQuery[str | None] = None,
    position: FromQuery[int | None] = None,
) -> Response[bytes]:
    subject = await _subject(ctx, "issuer", issuer)
    return await _timeline(ctx, subject, bound_of(at, position), after, limit)


@get(SUBJECT + "/state", summary="A subject's state as of an instant or log position",
     operation_class=AUDIT_STATE_DOC)  # fmt: skip
async def subject_state(
    ctx: NamedDependency[Context],
    kind: FromPath[str],
    subject_id: FromPath[str],
    at: FromQuery[str | None] = None,
    position: FromQuery[int | None] = None,
) -> Response[bytes]:
    subject = await _subject(ctx, kind, subject_id)
    return await _state(ctx, subject, bound_of(at, position))


@get(ISSUER + "/state", summary="A provider's state as of an instant or log position",
     operation_class=AUDIT_STATE_DOC)  # fmt: skip
async def issuer_state(
    ctx: NamedDependency[Context],
    issuer: FromQuery[str],
    at: FromQuery[str | None] = None,
    position: FromQuery[int | None] = None,
) -> Response[bytes]:
    subject = await _subject(ctx, "issuer", issuer)
    return await _state(ctx, subject, bound_of(at, position))


@get(SUBJECT + "/export", summary="A subject's events as JSON Lines, with the proof",
     operation_class=AUDIT_EXPORT_DOC)  # fmt: skip
async def subject_export(
    ctx: NamedDependency[Context],
    kind: FromPath[str],
    subject_id: FromPath[str],
    at: FromQuery[str | None] = None,
    position: FromQuery[int | None] = None,
) -> Stream:
    subject = await _subject(ctx, kind, subject_id)
    return _export(ctx, subject, bound_of(at, position))


@get(ISSUER + "/export", summary="A provider's events as JSON Lines, with the proof",
     operation_class=AUDIT_EXPORT_DOC)  # fmt: skip
async def issuer_export(
    ctx: NamedDependency[Context],
    issuer: FromQuery[str],
    at: FromQuery[str | None] = None,
    position: FromQuery[int | None] = None,
) -> Stream:
    subject = await _subject(ctx, "issuer", issuer)
    return _export(ctx, subject, bound_of(at, position))


@get(AUDIT + "/verify", summary="Walk the hash chain and its signed checkpoints",
     operation_class=AUDIT_VERIFY_DOC, opt={ACCEPTS: OPERATOR_ONLY})  # fmt: skip
async def verify_chain(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[Context],
    resources: NamedDependency[Resources],
) -> Response[bytes]:
    settings = settings_of(request)
    pinned: dict[str, Jwk] | None = None
    unreadable = None
    if settings.audit_keys is not None:
        try:
            pinned = await load_pinned(settings.audit_keys)
        except PinnedKeysError as exc:
            unreadable = f"the pinned keys (AUTHLEDGER_AUDIT_KEYS) cannot be read: {exc}"
    where = CheckpointStream.from_settings(settings)
    if resources.nats.connected:
        published = await read_newest(resources.nats.client.jetstream(timeout=5.0), where)
    else:
        published = Published.not_read(where.stream, "NATS is not connected")
    report = await verify(ctx.pool, trusted_keys=pinned, published=published)
    if unreadable is not None:
        report.unvouched.insert(0, unreadable)
    body: dict[str, Any] = report.as_json()
    return json_reply(body)


def audit_router(settings: Settings, gate: AccessGate) -> Router:
    handlers = [
        subject_timeline,
        issuer_timeline,
        subject_state,
        issuer_state,
        subject_export,
        issuer_export,
        verify_chain,
    ]
    return guarded_router(handlers, gate, ADMIN_SCOPES, tag="audit", settings=settings)
