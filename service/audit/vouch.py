"""What lets `audit verify` vouch for a log: anchors its own database cannot rewrite.

- Keys the auditor pinned (a JWKS from `authledger audit keys`, kept outside the database):
  keys read from the database being checked prove nothing against whoever can write to it.
- The newest checkpoint published off the database (service/audit/published.py): the log
  must reach its position and hold its hash there, so a tail cut together with the
  checkpoint rows that anchored it, or a rewrite below it, shows.

Each missing anchor is a reason in the report's `not_vouched` list; the verdict is then
`unvouched` (exit status 3 on the command line), never `verified`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.audit.published import Published
from service.audit.signed import BadCheckpoint, Checkpoint, Jwk, UnknownKey, claimed_position
from service.audit.signed import verify as verify_checkpoint


@dataclass
class Anchor:
    """The newest published checkpoint as verify saw it."""

    stream: str
    checkpoint: Checkpoint | None = None  # verified under the keys (None: none, or not checked)
    refused: str | None = None  # why its signature does not hold (a break)
    claimed: int = 0  # the position a refused one claims
    held: bool | None = None  # the log reaches it and agrees (None: nothing to hold)

    @property
    def position(self) -> int | None:
        return None if self.checkpoint is None else self.checkpoint.position

    def as_json(self) -> dict[str, Any]:
        signed_at = None if self.checkpoint is None else self.checkpoint.signed_at.isoformat()
        return {
            "stream": self.stream,
            "position": self.position,
            "signed_at": signed_at,
            "held": self.held,
        }


def compare_published(
    published: Published | None, keys: Mapping[str, Jwk], *, stored: int, report: list[str]
) -> Anchor | None:
    """The newest published checkpoint, verified under `keys`; reasons it cannot serve as an
    anchor are appended to `report` (`stored`: how many checkpoints the database holds)."""
    if published is None:
        report.append("no checkpoint published off the database was compared")
        return None
    anchor = Anchor(published.stream)
    report.extend(published.unavailable)
    if published.jws is None:
        if stored and not published.unavailable:
            report.append(
                f"the database holds {stored} signed checkpoint(s) but the stream "
                f"{published.stream} holds none (publication lagging, or the stream replaced)"
            )
        return anchor
    try:
        anchor.checkpoint = verify_checkpoint(published.jws, keys)
    except UnknownKey as exc:
        report.append(f"the newest published checkpoint cannot be checked: {exc}")
    except BadCheckpoint as exc:
        anchor.refused = f"the newest published checkpoint (stream {published.stream}): {exc}"
        anchor.claimed = claimed_position(published.jws)
    return anchor


def key_reasons(pinned: bool, unknown: Mapping[str, list[int]]) -> list[str]:
    """Why the checkpoints' signatures prove nothing: keys not pinned, or not all of them."""
    if not pinned:
        return [
            "the checkpoint keys were read from the database being checked: pin them "
            "(--keys FILE_OR_URL or AUTHLEDGER_AUDIT_KEYS; `authledger audit keys` prints them)"
        ]
    return [
        f"{len(positions)} checkpoint(s) (positions {positions[0]}..{positions[-1]}) are signed "
        f"by key {kid}, which is not pinned (after a key rotation, pin the new key too)"
        for kid, positions in unknown.items()
    ]
