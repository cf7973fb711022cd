"""The hash-chained audit trail: any edit, deletion or reordering is detected where it starts."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from refundbridge.core.audit import GENESIS, AuditEvent, chain_event, verify_chain
from tests.unit.builders import at


def _chain(length: int = 5) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    seq, head = 0, GENESIS
    for index in range(length):
        event = chain_event(
            seq, head, at=at(index), actor=f"actor-{index}", name=f"event-{index}",
            from_state=f"state-{index}", to_state=f"state-{index + 1}",
            data={"index": index, "amount": {"amount": "1.00", "currency": "CNY"}},
        )
        events.append(event)
        seq, head = event.seq, event.hash
    return events


def test_a_fresh_chain_verifies() -> None:
    events = _chain()
    check = verify_chain(events)
    assert check.verifies
    assert check.events == 5
    assert check.first_broken_seq is None and check.problem is None
    assert events[0].prev_hash == GENESIS
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]


def test_an_empty_chain_verifies() -> None:
    assert verify_chain([]).verifies


def test_hash_covers_the_content() -> None:
    event = _chain(1)[0]
    assert event.hash == event.computed_hash()
    assert len(event.hash) == 64


EDITS: dict[str, Any] = {
    "at": at(99),
    "actor": "mallory",
    "name": "approve",
    "from_state": "received",
    "to_state": "closed",
    "data": {"index": 0, "amount": {"amount": "1000.00", "currency": "CNY"}},
    "hash": "f" * 64,
}


@pytest.mark.parametrize("position", [0, 2, 4])
@pytest.mark.parametrize("field", list(EDITS))
def test_editing_any_field_of_any_event_is_detected(field: str, position: int) -> None:
    events = _chain()
    events[position] = dataclasses.replace(events[position], **{field: EDITS[field]})
    check = verify_chain(events)
    assert not check.verifies
    assert check.first_broken_seq == position + 1


@pytest.mark.parametrize("position", [0, 2, 4])
def test_editing_nested_data_in_place_is_detected(position: int) -> None:
    events = _chain()
    events[position].data["amount"]["amount"] = "999.00"
    check = verify_chain(events)
    assert not check.verifies
    assert check.first_broken_seq == position + 1


@pytest.mark.parametrize("position", [0, 2, 4])
def test_changing_seq_is_detected(position: int) -> None:
    events = _chain()
    events[position] = dataclasses.replace(events[position], seq=events[position].seq + 10)
    check = verify_chain(events)
    assert not check.verifies
    assert check.first_broken_seq == position + 11


@pytest.mark.parametrize("position", [0, 1, 3])
def test_deleting_an_event_is_detected(position: int) -> None:
    events = _chain()
    del events[position]
    check = verify_chain(events)
    assert not check.verifies
    # The event now in the deleted one's place is the first that no longer fits.
    assert check.first_broken_seq == position + 2


def test_deleting_the_last_event_leaves_a_valid_shorter_chain() -> None:
    # A chain cannot prove its own tail; the stored head (audit_head) is what catches this.
    events = _chain()
    assert verify_chain(events[:-1]).verifies
    assert events[-2].hash != events[-1].hash


@pytest.mark.parametrize(("first", "second"), [(0, 1), (1, 3), (3, 4)])
def test_reordering_events_is_detected(first: int, second: int) -> None:
    events = _chain()
    events[first], events[second] = events[second], events[first]
    check = verify_chain(events)
    assert not check.verifies
    assert check.first_broken_seq == second + 1  # the event that moved up to `first`


@pytest.mark.parametrize("position", [0, 2, 4])
def test_changing_prev_hash_is_detected(position: int) -> None:
    events = _chain()
    events[position] = dataclasses.replace(events[position], prev_hash="a" * 64)
    check = verify_chain(events)
    assert not check.verifies
    assert check.first_broken_seq == position + 1
    assert check.problem == "prev_hash does not match"


@pytest.mark.parametrize("position", [0, 2, 4])
def test_resealing_an_edited_event_breaks_the_next_link(position: int) -> None:
    events = _chain()
    edited = dataclasses.replace(events[position], actor="mallory")
    events[position] = dataclasses.replace(edited, hash=edited.computed_hash())
    check = verify_chain(events)
    if position == len(events) - 1:
        assert check.verifies  # only the stored head can catch an edit of the last one
    else:
        assert not check.verifies
        assert check.first_broken_seq == position + 2


def test_as_json_round_trips_every_field() -> None:
    event = _chain(1)[0]
    payload = event.as_json()
    assert payload["hash"] == event.hash and payload["prev_hash"] == GENESIS
    assert payload["seq"] == 1 and payload["name"] == "event-0"
    assert payload["at"] == at(0).isoformat()
