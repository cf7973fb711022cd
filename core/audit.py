"""The audit trail: an append-only, hash-chained list of what happened to a case.

Each event stores the hash of the one before it, so editing or deleting any event breaks the
chain from that point on (21 CFR 11.10(e); R18 in shared/design/compliance.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    at: datetime
    actor: str
    name: str
    from_state: str | None
    to_state: str | None
    data: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def body(self) -> bytes:
        """The canonical bytes the hash covers: every field but the hash itself."""
        return json.dumps(
            {
                "seq": self.seq,
                "at": self.at.isoformat(),
                "actor": self.actor,
                "name": self.name,
                "from": self.from_state,
                "to": self.to_state,
                "data": self.data,
                "prev": self.prev_hash,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        ).encode()

    def computed_hash(self) -> str:
        return hashlib.sha256(self.body()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "name": self.name,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def chain_event(
    prev_seq: int,
    prev_hash: str,
    *,
    at: datetime,
    actor: str,
    name: str,
    from_state: str | None,
    to_state: str | None,
    data: dict[str, Any],
) -> AuditEvent:
    unsealed = AuditEvent(prev_seq + 1, at, actor, name, from_state, to_state, data, prev_hash)
    return AuditEvent(
        unsealed.seq, at, actor, name, from_state, to_state, data, prev_hash,
        unsealed.computed_hash(),
    )


@dataclass(frozen=True, slots=True)
class ChainCheck:
    verifies: bool
    events: int
    first_broken_seq: int | None = None
    problem: str | None = None


def verify_chain(events: list[AuditEvent]) -> ChainCheck:
    prev_hash = GENESIS
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            return ChainCheck(False, len(events), event.seq, f"expected seq {expected_seq}")
        if event.prev_hash != prev_hash:
            return ChainCheck(False, len(events), event.seq, "prev_hash does not match")
        if event.computed_hash() != event.hash:
            return ChainCheck(False, len(events), event.seq, "hash does not match the content")
        prev_hash = event.hash
    return ChainCheck(True, len(events))
