"""The offline checker of audit exports: only the file's content (and a trusted JWKS), no
database. Exports are assembled here the way service/audit/export.py writes them, from a
chain hashed by the real code and checkpoints signed with a real Ed25519 key."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.envelope import RecordedEvent
from events.hashchain import GENESIS, event_hash, framed_content
from service.audit.check import check
from service.audit.export import CHAIN, FORMAT, event_line, plan
from service.audit.signed import sign
from service.crypto.signing import public_jwk

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
EVERY = 4  # a checkpoint every 4 positions
MINE, OTHER = "cred_mine", "cred_other"


def _chain(n: int) -> list[RecordedEvent]:
    """Positions 1..n; odd positions are MINE's stream (versions 1, 2, ...), even OTHER's."""
    events, prev, versions = [], GENESIS, {MINE: 0, OTHER: 0}
    for position in range(1, n + 1):
        stream = MINE if position % 2 else OTHER
        versions[stream] += 1
        fields: dict[str, Any] = {
            "position": position,
            "event_id": uuid.UUID(int=position),
            "tenant_id": "default",
            "stream_type": "credential",
            "stream_id": stream,
            "stream_version": versions[stream],
            "type": "credential.revoked",
            "schema_version": 1,
            "occurred_at": T0 + timedelta(seconds=position),
            "recorded_at": T0 + timedelta(seconds=position, microseconds=7),
            "payload": f'{{"type":"credential.revoked","reason":"r{position}","n":"é"}}'.encode(),
            "metadata": b'{"actor":"admin"}',
        }
        prev = event_hash(prev, **fields)
        events.append(RecordedEvent(**fields, hash=prev))
    return events


class Signer:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.jwk = public_jwk(self.key)

    def checkpoint(self, event: RecordedEvent) -> str:
        return sign(
            private_key=self.key,
            kid=self.jwk["kid"],
            position=event.position,
            chain_hash=event.hash,
            at=T0 + timedelta(days=1),
        ).jws


def _digest(event: RecordedEvent) -> str:
    fields = {
        k: getattr(event, k)
        for k in (
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
        )
    }
    return hashlib.sha256(framed_content(**fields)).hexdigest()


def export_of(
    chain: list[RecordedEvent], signer: Signer, *, stream: str = MINE, signed_up_to: int = 10**9
) -> list[dict[str, Any]]:
    """The export of `stream`'s events: header, events, digests, checkpoints."""
    marks = [e.position for e in chain if e.position % EVERY == 0 and e.position <= signed_up_to]
    mine = [e for e in chain if e.stream_id == stream]
    runs = plan([e.position for e in mine], marks)
    header = {
        "line": "header",
        "format": FORMAT,
        "version": 1,
        "tenant": "default",
        "subject": {"kind": "credential", "id": stream},
        "bound": {},
        "exported_at": T0.isoformat(),
        "chain": CHAIN,
        "events": len(mine),
        "streams_complete": True,
        "runs": [r.as_json() for r in runs],
        "anchored": all(r.anchored for r in runs),
        "jwks": {"keys": [signer.jwk]},
    }
    lines: list[dict[str, Any]] = [header, *(event_line(e) for e in mine)]
    covered = [p for r in runs for p in range(r.after + 1, r.to + 1)]
    by_position = {e.position: e for e in chain}
    lines += [
        {"line": "digest", "position": p, "digest": _digest(by_position[p])}
        for p in covered
        if by_position[p].stream_id != stream
    ]
    used = sorted({r.after for r in runs if r.after} | {r.to for r in runs if r.anchored})
    lines += [
        {"line": "checkpoint", "position": p, "jws": signer.checkpoint(by_position[p])}
        for p in used
    ]
    return lines


def text(lines: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def jwks(signer: Signer) -> dict[str, Any]:
    return {"keys": [signer.jwk]}


@pytest.fixture
def signer() -> Signer:
    return Signer()


def test_an_intact_export_verifies_with_its_own_keys_and_with_trusted_ones(signer: Signer) -> None:
    """Every event proven from a signed checkpoint to the next; the file alone suffices."""
    content = text(export_of(_chain(12), signer))
    report = check(content)
    assert (report.verdict, report.events, report.keys) == ("verified", 6, "file")
    assert report.checkpoints == 3  # 4, 8, 12: positions 1..12 in one run from the genesis
    trusted = check(content.encode(), trusted_jwks=jwks(signer))
    assert (trusted.verdict, trusted.keys) == ("verified", "trusted JWKS")


def test_an_edited_event_is_named(signer: Signer) -> None:
    lines = export_of(_chain(12), signer)
    event = next(line for line in lines if line.get("position") == 5)
    event["payload"] = event["payload"].replace("r5", "r6")
    report = check(text(lines))
    assert report.verdict == "broken"
    assert report.problems == [
        "event at position 5: its hash does not follow from the chain (the event or the proof "
        "was altered)"
    ]


def test_an_edited_digest_no_longer_reaches_the_signed_hash(signer: Signer) -> None:
    lines = export_of(_chain(12), signer)
    digest = next(line for line in lines if line.get("position") == 12)
    digest["digest"] = "00" * 32
    report = check(text(lines))
    assert report.verdict == "broken"
    assert report.problems == [
        "the chain at position 12 does not reach the hash signed there: something in 1..12 "
        "was altered"
    ]


def test_a_missing_proof_line_leaves_the_rest_unproven(signer: Signer) -> None:
    lines = [line for line in export_of(_chain(12), signer) if line.get("position") != 6]
    report = check(text(lines))
    assert report.verdict == "broken"
    assert "positions 7..12 do not start right after a signed checkpoint" in report.problems


def test_an_event_hidden_behind_its_digest_shows_as_a_version_gap(signer: Signer) -> None:
    """A dishonest exporter keeps the proof whole but shows event 5 only as a digest: the
    chain holds, the stream's versions 1, 2, 4, ... do not."""
    chain = _chain(12)
    lines = export_of(chain, signer)
    hidden = next(i for i, line in enumerate(lines) if line.get("position") == 5)
    lines[hidden] = {"line": "digest", "position": 5, "digest": _digest(chain[4])}
    lines[0]["events"] -= 1
    report = check(text(lines))
    assert report.problems == [
        "stream default/cred_mine: versions [1, 2, 4, 5, 6] do not run 1, 2, 3 ... "
        "(an event is missing)"
    ]


def test_a_forged_key_passes_only_its_own_jwks_never_the_trusted_one(signer: Signer) -> None:
    """Re-signed by someone else with their key in the file: consistent on its own terms,
    refused under the auditor's JWKS."""
    chain = _chain(12)
    forger = Signer()
    forged = export_of(chain, forger)
    assert check(text(forged)).verdict == "verified"
    report = check(text(forged), trusted_jwks=jwks(signer))
    assert report.verdict == "broken"
    assert all("not among the keys given" in p for p in report.problems)
    forged[0]["jwks"] = {"keys": [{**forger.jwk, "kid": signer.jwk["kid"]}]}
    assert "is not the trusted key of that kid" in " ".join(
        check(text(forged), trusted_jwks=jwks(signer)).problems
    )


def test_a_tampered_checkpoint_signature_is_named(signer: Signer) -> None:
    lines = export_of(_chain(12), signer)
    checkpoint = next(line for line in lines if line["line"] == "checkpoint")
    head, payload, signature = checkpoint["jws"].split(".")
    checkpoint["jws"] = f"{head}.{payload}.{signature[:-4]}AAAA"
    report = check(text(lines))
    assert report.verdict == "broken"
    assert "checkpoint at position 4: signature does not verify" in report.problems


def test_events_after_the_last_checkpoint_are_unanchored(signer: Signer) -> None:
    """Consistent, but nothing signed vouches for the newest events."""
    report = check(text(export_of(_chain(11), signer, signed_up_to=8)))
    assert (report.verdict, report.problems) == ("unanchored", [])


@pytest.mark.parametrize(
    "content",
    ["", "not json\n", '{"line":"event"}\n', '{"line":"header","format":"other"}\n'],
)
def test_what_is_not_an_export_is_refused(content: str) -> None:
    assert check(content).verdict == "broken"


def test_a_malformed_event_line_is_a_problem_not_a_crash(signer: Signer) -> None:
    lines = export_of(_chain(12), signer)
    event = next(line for line in lines if line.get("position") == 3)
    event["payload"] = {"not": "the stored text"}
    report = check(text(lines))
    assert report.verdict == "broken"
    assert report.problems[0].startswith("position 3: malformed event line")
