"""The events the Lua scripts append to the stream, as typed values. Pure, no I/O.

A stream entry is a flat map of strings; ``parse`` turns it into one of the event types
below or raises ``PoisonEvent`` (the persister moves such an entry to the dead-letter
stream instead of retrying it forever).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stockguard import domain
from stockguard.domain import Line, Reservation, Status
from stockguard.stores.redis.codec import (
    StreamId,
    decode_after,
    decode_at,
    decode_lines,
    with_allocations,
    with_backordered,
)


class PoisonEvent(ValueError):
    """An entry that cannot be understood or applied: retrying will not help."""


@dataclass(frozen=True, slots=True)
class Reserved:
    entry_id: StreamId
    reservation: Reservation


@dataclass(frozen=True, slots=True)
class Ended:
    """A held reservation confirmed, released or expired."""

    entry_id: StreamId
    reservation_id: str
    status: Status
    lines: tuple[Line, ...]
    at_ms: int
    on_hand_after: Mapping[str, int]
    """Per SKU after a confirm (the ledger's ``on_hand_after``); empty otherwise."""
    on_hand_after_at: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Per (SKU, location other than the default one) after a confirm of a located line
    (docs/locations.md#settling); the default location's are in ``on_hand_after``."""


@dataclass(frozen=True, slots=True)
class Extended:
    """A held reservation's expiry moved later (``extend.lua``); no outbox event says so
    (no event type exists for it), SQL's ``reservations.expires_at_ms`` follows."""

    entry_id: StreamId
    reservation_id: str
    expires_at_ms: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class ReleasedPart:
    """Some units of a held reservation given back, the rest still held
    (``release_part.lua``); ``lines`` are the units given back."""

    entry_id: StreamId
    reservation_id: str
    lines: tuple[Line, ...]
    at_ms: int
    given_at: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Of located lines, the units given back per (SKU, location), as
    ``domain.shrink_allocations`` decided in the script; a line not in it gave back at
    the default location (docs/locations.md#settling)."""


@dataclass(frozen=True, slots=True)
class LocationStockSet:
    """An admin write of a SKU's level at a location other than the default one
    (``set_location.lua``): on_hand moved by ``delta``; safety stock and allowance set."""

    entry_id: StreamId
    sku: str
    location: str
    delta: int
    on_hand_after: int
    safety_stock: int
    backorder_max: int
    created: bool
    """The level is new: SQL inserts it (and the SKU's row becomes ``located``)."""
    at_ms: int


@dataclass(frozen=True, slots=True)
class StockChanged:
    entry_id: StreamId
    sku: str
    delta: int
    on_hand_after: int
    reason: str
    created: bool
    at_ms: int


@dataclass(frozen=True, slots=True)
class ProductCreated:
    entry_id: StreamId
    product_id: str
    name: str
    options: Mapping[str, tuple[str, ...]]
    variants: tuple[domain.VariantSpec, ...]
    at_ms: int


Event = (
    Reserved | Ended | Extended | ReleasedPart | StockChanged | ProductCreated | LocationStockSet
)


def product_payload(product_id: str, spec: domain.ProductSpec) -> str:
    """The product as the create_product script appends it (JSON)."""
    return json.dumps(
        {
            "id": product_id,
            "name": spec.name,
            "options": {axis: list(values) for axis, values in spec.options.items()},
            "variants": [
                {"sku": v.sku, "options": dict(v.options), "on_hand": v.on_hand}
                for v in spec.variants
            ],
        },
        separators=(",", ":"),
    )


def parse(entry_id: str, fields: Mapping[str, str]) -> Event:
    try:
        return _parse(StreamId.parse(entry_id), fields)
    except (KeyError, ValueError, TypeError, AttributeError, domain.InvalidInput) as error:
        raise PoisonEvent(f"entry {entry_id}: {type(error).__name__}: {error}") from error


def _parse(entry_id: StreamId, fields: Mapping[str, str]) -> Event:
    kind = fields["type"]
    if kind == "reserved":
        return Reserved(
            entry_id,
            Reservation(
                id=fields["id"],
                order_id=fields["order_id"],
                customer_id=fields.get("customer_id") or None,
                status=Status.HELD,
                # Present only when some line went on backorder (docs/design.md#backorders).
                lines=with_allocations(
                    with_backordered(_lines(fields["lines"]), fields.get("backordered")),
                    fields.get("alloc"),
                ),
                expires_at_ms=int(fields["expires_at"]),
                created_at_ms=int(fields["at"]),
            ),
        )
    if kind in (Status.CONFIRMED, Status.RELEASED, Status.EXPIRED):
        return Ended(
            entry_id,
            fields["id"],
            Status(kind),
            with_allocations(_lines(fields["lines"]), fields.get("alloc")),
            int(fields["at"]),
            decode_after(fields.get("after", "")),
            decode_at(fields.get("after_loc")),
        )
    if kind == "extended":
        return Extended(entry_id, fields["id"], int(fields["expires_at"]), int(fields["at"]))
    if kind == "released_part":
        return ReleasedPart(
            entry_id,
            fields["id"],
            _lines(fields["lines"]),
            int(fields["at"]),
            decode_at(fields.get("given_at")),
        )
    if kind == "location":
        return LocationStockSet(
            entry_id,
            domain.validate_sku(fields["sku"]),
            fields["location"],
            int(fields["delta"]),
            int(fields["after"]),
            int(fields["safety"]),
            int(fields["backorder"]),
            fields.get("created") == "1",
            int(fields["at"]),
        )
    if kind == "stock":
        return StockChanged(
            entry_id,
            domain.validate_sku(fields["sku"]),
            int(fields["delta"]),
            int(fields["after"]),
            fields["reason"],
            fields.get("created") == "1",
            int(fields["at"]),
        )
    if kind == "product":
        return _product(entry_id, json.loads(fields["product"]), int(fields["at"]))
    raise ValueError(f"unknown event type {kind!r}")


def _lines(text: str) -> tuple[Line, ...]:
    lines = decode_lines(text)
    if not lines:
        raise ValueError("an event without lines")
    return lines


def _product(entry_id: StreamId, payload: Any, at_ms: int) -> ProductCreated:
    variants = tuple(
        domain.VariantSpec(
            domain.validate_sku(v["sku"]),
            {str(k): str(x) for k, x in v["options"].items()},
            domain.validate_on_hand(v["on_hand"]),
        )
        for v in payload["variants"]
    )
    options = {
        str(axis): tuple(str(x) for x in values) for axis, values in payload["options"].items()
    }
    return ProductCreated(
        entry_id, str(payload["id"]), str(payload["name"]), options, variants, at_ms
    )
