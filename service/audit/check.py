"""The offline checker of an audit export: nothing but the file's content (and, optionally, a
JWKS the auditor trusts). No database, no network.

1. The checkpoints' signatures are verified with the keys: the trusted JWKS when one is given
   (a key the file carries under the same kid must then be that very key), else the file's
   own JWKS, which proves only that whoever wrote the file holds that key.
2. Positions of the file (events and digests) form runs of consecutive positions. Each run
   must start right after a signed checkpoint (or at position 1, from 32 zero bytes); the
   chain is recomputed along it from the signed hash: an event's content digest is computed
   from its fields, the other positions' digests are taken from the file. Each event's hash
   must be the chain's at its position, and the chain must equal every signed hash it passes.
3. A run that ends on a signed checkpoint anchors its events; one that does not is
   "unanchored": consistent, but nothing signed vouches for its end.
4. When the slice holds every event of its streams up to a position (not bounded by an
   instant, which may leave out an event dated later than one recorded after it), each
   stream's versions must run 1, 2, 3 ... without a gap: an event left out of the middle
   of a stream shows.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events.hashchain import GENESIS, content_digest, link
from service.audit.signed import BadCheckpoint, Jwk, key_set
from service.audit.signed import verify as verify_checkpoint

FORMAT = "authledger-audit-export"


@dataclass
class CheckReport:
    events: int = 0
    runs: int = 0
    checkpoints: int = 0
    anchored: bool = False
    keys: str = "file"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        if self.problems:
            return "broken"
        return "verified" if self.anchored else "unanchored"

    def as_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "events": self.events,
            "runs": self.runs,
            "checkpoints": self.checkpoints,
            "keys": self.keys,
            "problems": self.problems,
        }


def check(
    content: str | bytes | Iterable[str], *, trusted_jwks: Mapping[str, Any] | None = None
) -> CheckReport:
    """Check an export's content (see the module docstring)."""
    report = CheckReport()
    if isinstance(content, bytes):
        content = content.decode()
    lines = content.splitlines() if isinstance(content, str) else list(content)
    try:
        parsed = [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as exc:
        report.problems.append(f"not JSON Lines: {exc}")
        return report
    if not parsed or parsed[0].get("line") != "header" or parsed[0].get("format") != FORMAT:
        report.problems.append(f"not an {FORMAT} file (no header line)")
        return report
    header, body = parsed[0], parsed[1:]
    if header.get("version") != 1:
        report.problems.append(f"unknown format version {header.get('version')!r}")
        return report
    keys = _keys(header, trusted_jwks, report)
    signed = _checkpoints(body, keys, report)
    events, digests = _positions(body, report)
    report.events = len(events)
    if header.get("events") != len(events):
        report.problems.append(
            f"the header announces {header.get('events')} events, the file holds {len(events)}"
        )
    _walk(events, digests, signed, report)
    if header.get("streams_complete"):
        _versions(events.values(), report)
    return report


def _keys(
    header: Mapping[str, Any], trusted: Mapping[str, Any] | None, report: CheckReport
) -> dict[str, Jwk]:
    try:
        carried = key_set(header.get("jwks") or {"keys": []})
        if trusted is None:
            return carried
        pinned = key_set(trusted)
    except BadCheckpoint as exc:
        report.problems.append(str(exc))
        return {}
    report.keys = "trusted JWKS"
    for kid, jwk in carried.items():
        if kid in pinned and jwk.get("x") != pinned[kid].get("x"):
            report.problems.append(f"key {kid} in the file is not the trusted key of that kid")
    return pinned


def _checkpoints(
    body: list[dict[str, Any]], keys: Mapping[str, Jwk], report: CheckReport
) -> dict[int, bytes]:
    signed: dict[int, bytes] = {}
    for line in body:
        if line.get("line") != "checkpoint":
            continue
        try:
            checkpoint = verify_checkpoint(str(line.get("jws")), keys)
        except BadCheckpoint as exc:
            report.problems.append(f"checkpoint at position {line.get('position')}: {exc}")
            continue
        if checkpoint.position != line.get("position"):
            report.problems.append(
                f"checkpoint line {line.get('position')} signs position {checkpoint.position}"
            )
            continue
        signed[checkpoint.position] = checkpoint.chain_hash
    report.checkpoints = len(signed)
    return signed


def _positions(
    body: list[dict[str, Any]], report: CheckReport
) -> tuple[dict[int, dict[str, Any]], dict[int, bytes]]:
    """Events by position (with their recomputed digest under `_digest`), other digests."""
    events: dict[int, dict[str, Any]] = {}
    digests: dict[int, bytes] = {}
    for line in body:
        kind = line.get("line")
        if kind not in ("event", "digest"):
            continue
        position = line.get("position")
        if not isinstance(position, int) or position in events or position in digests:
            report.problems.append(f"position {position!r} is given twice or is not a number")
            continue
        try:
            if kind == "event":
                events[position] = {**line, "_digest": _digest(line)}
            else:
                digests[position] = bytes.fromhex(line["digest"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            report.problems.append(f"position {position}: malformed {kind} line ({exc})")
    return events, digests


def _digest(event: Mapping[str, Any]) -> bytes:
    return content_digest(
        position=event["position"],
        event_id=uuid.UUID(event["event_id"]),
        tenant_id=event["tenant_id"],
        stream_type=event["stream_type"],
        stream_id=event["stream_id"],
        stream_version=event["stream_version"],
        type=event["type"],
        schema_version=event["schema_version"],
        occurred_at=datetime.fromisoformat(event["occurred_at"]),
        recorded_at=datetime.fromisoformat(event["recorded_at"]),
        payload=event["payload"].encode(),
        metadata=event["metadata"].encode(),
    )


def _walk(
    events: Mapping[int, dict[str, Any]],
    digests: Mapping[int, bytes],
    signed: Mapping[int, bytes],
    report: CheckReport,
) -> None:
    positions = sorted({*events, *digests})
    runs: list[list[int]] = []
    for position in positions:
        if runs and runs[-1][-1] == position - 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    report.runs = len(runs)
    anchored = True
    for run in runs:
        start = run[0]
        if start == 1:
            prev = GENESIS
        elif start - 1 in signed:
            prev = signed[start - 1]
        else:
            report.problems.append(
                f"positions {start}..{run[-1]} do not start right after a signed checkpoint"
            )
            continue
        for position in run:
            event = events.get(position)
            prev = link(prev, event["_digest"] if event else digests[position])
            if event is not None and prev.hex() != event.get("hash"):
                report.problems.append(
                    f"event at position {position}: its hash does not follow from the chain "
                    "(the event or the proof was altered)"
                )
                return
            if position in signed and prev != signed[position]:
                report.problems.append(
                    f"the chain at position {position} does not reach the hash signed there: "
                    f"something in {start}..{position} was altered"
                )
                return
        if run[-1] not in signed and any(p in events for p in run):
            anchored = False
    report.anchored = anchored and bool(runs)


def _versions(events: Iterable[Mapping[str, Any]], report: CheckReport) -> None:
    by_stream: dict[str, list[int]] = defaultdict(list)
    for event in events:
        by_stream[f"{event['tenant_id']}/{event['stream_id']}"].append(event["stream_version"])
    for stream, versions in sorted(by_stream.items()):
        ordered = sorted(versions)
        if ordered != list(range(1, len(ordered) + 1)):
            report.problems.append(
                f"stream {stream}: versions {ordered} do not run 1, 2, 3 ... (an event is missing)"
            )
