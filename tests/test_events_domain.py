"""The pure event rules (domain/events.py): what one transaction says, property-tested."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockguard import domain
from stockguard.domain import Line, Movement, Reservation, Status
from stockguard.domain.events import (
    EVENT_TYPES_ALL,
    EVENT_TYPES_STOCK,
    EventRecorder,
    EventType,
    LevelAfter,
    crossings,
    parse_event_types,
)


def test_event_type_settings_parse_families_and_refuse_unknown_names() -> None:
    assert parse_event_types("all") == EVENT_TYPES_ALL
    assert parse_event_types("none") == frozenset()
    assert parse_event_types("") == frozenset()
    assert parse_event_types("stock") == EVENT_TYPES_STOCK
    assert parse_event_types("reservation.*, stock.low") == (
        EVENT_TYPES_ALL - EVENT_TYPES_STOCK
    ) | {EventType.LOW}
    with pytest.raises(domain.InvalidInput, match=r"stock\.sold"):
        parse_event_types("stock.sold")


@pytest.mark.parametrize(
    ("before", "after", "threshold", "expected"),
    [
        (5, 0, None, [EventType.SOLD_OUT]),
        (0, 2, None, [EventType.BACK_IN_STOCK]),
        (5, 3, None, []),
        (5, 3, 3, [EventType.LOW]),
        (3, 2, 3, []),  # already inside the band
        (10, 0, 3, [EventType.SOLD_OUT]),  # straight to 0: sold out says it
        (0, 2, 3, [EventType.BACK_IN_STOCK]),  # a rise is never low
        (2, 5, 3, []),
    ],
)
def test_crossings(
    before: int, after: int, threshold: int | None, expected: list[EventType]
) -> None:
    assert crossings(before, after, threshold) == expected


def hold(rid: str, sku: str, quantity: int) -> Reservation:
    return Reservation(rid, f"order-{rid}", None, Status.HELD, (Line(sku, quantity),), 10_000, 1)


# One transaction: holds (positive) and releases of earlier holds (negative), or an admin
# change of on_hand.
transaction = st.one_of(
    st.tuples(st.just("hold"), st.integers(1, 4)),
    st.tuples(st.just("release"), st.integers(0, 50)),
    st.tuples(st.just("adjust"), st.integers(-3, 5)),
)


@given(
    on_hand=st.integers(0, 12),
    steps=st.lists(transaction, max_size=40),
    low=st.none() | st.integers(1, 5),
)
def test_crossings_of_any_history_alternate_and_end_at_the_final_level(
    on_hand: int, steps: list[tuple[str, int]], low: int | None
) -> None:
    """Whatever the order of holds, releases and edits, sold_out and back_in_stock of a SKU
    alternate (starting from the initial state) and the last agrees with the final level;
    low fires only on a fall into the band."""
    reserved = 0
    start_available = on_hand
    held: list[Reservation] = []
    kinds: list[EventType] = []
    for n, (kind, amount) in enumerate(steps):
        recorder = EventRecorder(EVENT_TYPES_ALL)
        before = on_hand - reserved
        if kind == "hold":
            if on_hand - reserved < amount:
                continue  # refused: the transaction rolls back and records nothing
            reservation = hold(str(n), "X", amount)
            recorder.held([reservation])
            held.append(reservation)
            reserved += amount
        elif kind == "release":
            if not held:
                continue
            reservation = held.pop(amount % len(held))
            recorder.learn([reservation])
            recorder.ended([reservation.id], Status.RELEASED, n)
            reserved -= reservation.lines[0].quantity
        else:
            if amount == 0 or on_hand + amount < reserved:
                continue
            on_hand += amount
            recorder.moved([Movement(n, "X", amount, on_hand, "count", None)])
        events = recorder.build({"X": LevelAfter(on_hand, reserved, low)})
        for event in events:
            if event.type is EventType.LOW:
                available = on_hand - reserved
                assert low is not None and 0 < available <= low < before
            elif event.type in (EventType.SOLD_OUT, EventType.BACK_IN_STOCK):
                kinds.append(event.type)
    if kinds:  # each crossing flips in stock <-> sold out, from where the SKU started
        assert kinds[0] is (EventType.SOLD_OUT if start_available > 0 else EventType.BACK_IN_STOCK)
        assert all(a is not b for a, b in itertools.pairwise(kinds))
        assert (kinds[-1] is EventType.SOLD_OUT) == (on_hand - reserved == 0)


def test_a_partial_release_says_which_lines_went_back_and_can_end_sold_out() -> None:
    recorder = EventRecorder(EVENT_TYPES_ALL)
    recorder.released_part("r1", [Line("X", 2)], at_ms=7)
    events = recorder.build({"X": LevelAfter(5, 3)})  # available 0 -> 2
    assert [e.type for e in events] == [EventType.RELEASED, EventType.BACK_IN_STOCK]
    assert events[0].data["partial"] is True
    assert events[0].data["lines"] == [{"sku": "X", "quantity": 2}]
    assert events[0].at_ms == 7


def test_a_recorder_with_only_stock_types_writes_no_reservation_events() -> None:
    recorder = EventRecorder(EVENT_TYPES_STOCK)
    recorder.held([hold("r", "X", 3)])
    events = recorder.build({"X": LevelAfter(3, 3)})
    assert [e.type for e in events] == [EventType.SOLD_OUT]
    assert events[0].data["available_before"] == 3
