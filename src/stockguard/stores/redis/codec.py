"""How domain values are written into Redis strings and read back. Pure, no I/O.

Lines are ``SKU<TAB>qty`` joined by newlines: SKUs never hold control characters
(``domain.validate_sku``), and the Lua scripts parse this form with one pattern. A hold's
backordered units (docs/design.md#backorders) travel beside its lines in the same form,
``SKU<TAB>units`` for the lines that have any, so the lines' text (what a replay compares,
what every script parses) is the same with or without backorders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import total_ordering

from stockguard.domain import Allocation, Line, Reservation, Status, StockLevel


def encode_lines(lines: Iterable[Line]) -> str:
    return "\n".join(f"{line.sku}\t{line.quantity}" for line in sorted(lines, key=_sku))


def decode_lines(text: str) -> tuple[Line, ...]:
    if not text:
        return ()
    lines = []
    for row in text.split("\n"):
        sku, _, quantity = row.partition("\t")
        if not sku or not quantity.isdigit():
            raise ValueError(f"malformed line {row!r}")
        lines.append(Line(sku, int(quantity)))
    return tuple(sorted(lines, key=_sku))


def decode_after(text: str) -> dict[str, int]:
    """``SKU<TAB>on_hand_after`` rows of a confirm event; signed: confirming backordered
    units takes on_hand below 0 (docs/design.md#backorders)."""
    after: dict[str, int] = {}
    if not text:
        return after
    for row in text.split("\n"):
        sku, _, value = row.partition("\t")
        if not sku or not value.removeprefix("-").isdigit():
            raise ValueError(f"malformed on_hand after {row!r}")
        after[sku] = int(value)
    return after


def encode_backordered(lines: Iterable[Line]) -> str:
    """The backordered units of ``lines`` (only those with any), '' when none: the
    ``backordered`` field reserve.lua writes."""
    return "\n".join(
        f"{line.sku}\t{line.backordered}" for line in sorted(lines, key=_sku) if line.backordered
    )


def with_backordered(lines: tuple[Line, ...], text: str | None) -> tuple[Line, ...]:
    """``lines`` with the units ``text`` (a ``backordered`` field, absent or '' when no
    line has any) says are backordered; a SKU the lines do not hold is malformed."""
    if not text:
        return lines
    beyond = {line.sku: line.quantity for line in decode_lines(text)}
    if not beyond.keys() <= {line.sku for line in lines}:
        raise ValueError(f"backordered units of SKUs not held: {text!r}")
    return tuple(
        Line(line.sku, line.quantity, beyond[line.sku]) if line.sku in beyond else line
        for line in lines
    )


def encode_allocations(lines: Iterable[Line]) -> str:
    """The allocations of the located lines of a hold (docs/locations.md#model):
    ``SKU<TAB>location<TAB>qty<TAB>backordered`` rows, each line's in the order drawn; ''
    when no line has any (the ``alloc`` field reserve.lua writes)."""
    return "\n".join(
        f"{line.sku}\t{a.location}\t{a.quantity}\t{a.backordered}"
        for line in sorted(lines, key=_sku)
        for a in line.allocations
    )


def decode_allocations(text: str | None) -> dict[str, tuple[Allocation, ...]]:
    """SKU -> its line's allocations in the order drawn, from an ``alloc`` field."""
    found: dict[str, list[Allocation]] = {}
    if not text:
        return {}
    for row in text.split("\n"):
        parts = row.split("\t")
        if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
            raise ValueError(f"malformed allocation {row!r}")
        found.setdefault(parts[0], []).append(Allocation(parts[1], int(parts[2]), int(parts[3])))
    return {sku: tuple(drawn) for sku, drawn in found.items()}


def with_allocations(lines: tuple[Line, ...], text: str | None) -> tuple[Line, ...]:
    """``lines`` with the allocations an ``alloc`` field gives them (absent: unchanged)."""
    if not text:
        return lines
    drawn = decode_allocations(text)
    if not drawn.keys() <= {line.sku for line in lines}:
        raise ValueError(f"allocations of SKUs not held: {text!r}")
    return tuple(
        Line(line.sku, line.quantity, line.backordered, allocations=drawn[line.sku])
        if line.sku in drawn
        else line
        for line in lines
    )


def decode_at(text: str | None) -> dict[tuple[str, str], int]:
    """``SKU<TAB>location<TAB>n`` rows (a confirm's ``after_loc``, a partial release's
    ``given_at``) as (sku, location) -> n; signed (on_hand after may be below 0)."""
    found: dict[tuple[str, str], int] = {}
    if not text:
        return found
    for row in text.split("\n"):
        parts = row.split("\t")
        if len(parts) != 3 or not parts[2].removeprefix("-").isdigit():
            raise ValueError(f"malformed row {row!r}")
        found[(parts[0], parts[1])] = int(parts[2])
    return found


def _sku(line: Line) -> str:
    return line.sku


def pairs(flat: Sequence[str]) -> dict[str, str]:
    """A flat HGETALL reply (field, value, field, value…) as a mapping."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))


def reservation_from_hash(reservation_id: str, fields: Mapping[str, str]) -> Reservation:
    return Reservation(
        id=reservation_id,
        order_id=fields["order_id"],
        customer_id=fields.get("customer_id") or None,
        status=Status(fields["status"]),
        lines=with_allocations(
            with_backordered(decode_lines(fields["lines"]), fields.get("backordered")),
            fields.get("alloc"),
        ),
        expires_at_ms=int(fields["expires_at"]),
        created_at_ms=int(fields["created_at"]),
    )


def level_from(sku: str, values: Sequence[str | None]) -> StockLevel:
    """``[on_hand, reserved, version]`` as read by HMGET, then optionally ``safety``,
    ``cap`` and ``backorder`` (absent on a SKU without that policy)."""
    on_hand, reserved, version = values[:3]
    assert on_hand is not None
    assert reserved is not None
    assert version is not None
    safety = values[3] if len(values) > 3 else None
    cap = values[4] if len(values) > 4 else None
    backorder = values[5] if len(values) > 5 else None
    return StockLevel(
        sku,
        int(on_hand),
        int(reserved),
        int(version),
        int(safety or 0),
        None if cap is None else int(cap),
        int(backorder or 0),
    )


@total_ordering
@dataclass(frozen=True, slots=True)
class StreamId:
    """A stream entry id ``<ms>-<seq>``; ordered as Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> StreamId:
        ms, _, seq = text.partition("-")
        if not ms.isdigit() or not seq.isdigit():
            raise ValueError(f"not a stream id: {text!r}")
        return cls(int(ms), int(seq))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, StreamId):
            return NotImplemented
        return (self.ms, self.seq) < (other.ms, other.seq)

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


STREAM_START = StreamId(0, 0)
