"""Limits, the reservation lifecycle and the value types (docs/design.md#vocabulary)."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stockguard.domain.locations import LocationLevel

# Limits (docs/design.md#limits). Every input is checked against these before any write.
SKU_LEN_MAX = 64
LINES_MAX = 100
QUANTITY_MAX = 1_000_000
TTL_S_MIN = 1
TTL_S_MAX = 86_400
TTL_S_DEFAULT = 900
HOLD_LIFETIME_S_MAX = 86_400
"""How long a hold may live in all, from its creation: an extension never takes
``expires_at`` past ``created_at`` + this (it is clamped there), so a client that keeps
extending cannot keep stock out of the sale for ever (docs/design.md#extending-a-hold)."""
ORDER_ID_LEN_MAX = 128
CUSTOMER_ID_LEN_MAX = 128
ON_HAND_MAX = 10**12
REASON_LEN_MAX = 200
PRODUCT_NAME_LEN_MAX = 200
OPTION_AXES_MAX = 8
OPTION_VALUES_MAX = 100
OPTION_TEXT_LEN_MAX = 64
VARIANTS_MAX = 1_000
ID_LEN_MAX = 64
"""Reservation and product ids (ours are 36-character UUIDs)."""
PAGE_LIMIT_MAX = 500
"""Rows one page of a listing may hold."""
PAGE_LIMIT_DEFAULT = 50
CURSOR_DIGITS_MAX = 18
"""Page cursors are row sequence numbers: 18 digits always fit a signed 64-bit column."""
STOCK_QUERY_SKUS_MAX = 100
"""SKUs one stock query may name."""

TEXT_FORBIDDEN = r"\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
"""Characters no SKU, id or text may hold, as a regex class body (the same in Python,
JSON Schema and pydantic's regex dialects): C0 and C1 controls (NUL, newline, U+0085)
and the bidirectional overrides and isolates (U+202E would show ``ABC<RLO>DEF`` as
``ABCFED`` on the admin page and in a shop's back office)."""
_CONTROL_CHARS = re.compile(f"[{TEXT_FORBIDDEN}]")


DEFAULT_LOCATION_CODE = "default"
"""The location whose stock is a SKU's own ``stock_levels`` row (docs/locations.md#model):
a shop that never names a location sells from it unchanged."""


class Status(enum.StrEnum):
    HELD = "held"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self is not Status.HELD


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Allocation:
    """Units of one line drawn from one location: recorded with the line, and settled
    exactly (``locations.settle``; docs/locations.md#model)."""

    location: str
    quantity: int
    backordered: int = 0
    """Of ``quantity``, the units beyond that location's shelf, on its backorder allowance
    (what ``Line.backordered`` says, per location; the line's is the sum)."""


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int
    backordered: int = field(default=0, compare=False)
    """Units of ``quantity`` held beyond the physical stock, on the SKU's backorder
    allowance (docs/design.md#backorders): decided when the hold is granted, stored with
    the line. Not part of equality: a replay asks for the same lines whatever they got."""
    location: str | None = field(default=None, compare=False)
    """Asked for: the only location this line may draw from (click-and-collect); None: any
    (docs/locations.md#allocation-policy). Not part of equality, as ``backordered``."""
    allocations: tuple[Allocation, ...] = field(default=(), compare=False)
    """Held: where the units came from when the SKU is stocked at several locations; empty
    for a line held wholly at the default location (docs/locations.md#model)."""

    def drawn(self) -> tuple[Allocation, ...]:
        """Where the line's units are held: its allocations, or all at the default
        location (the line of a SKU stocked nowhere else). What every ending settles."""
        if self.allocations:
            return self.allocations
        return (Allocation(DEFAULT_LOCATION_CODE, self.quantity, self.backordered),)


@dataclass(frozen=True, slots=True)
class StockLevel:
    sku: str
    on_hand: int
    reserved: int
    version: int
    safety_stock: int = 0
    """Units never held (docs/design.md#safety-stock): defaulted so the many positional
    constructors of a level without a policy keep meaning what they meant."""
    customer_max: int | None = None
    """Units one customer may hold and have bought of this SKU; None: no cap
    (docs/design.md#per-customer-caps). Read in the same statement as the level, so a SKU
    without a cap costs no query."""
    backorder_max: int = 0
    """Units a shop chose to sell beyond on_hand (docs/design.md#backorders): holds may
    take ``reserved`` up to ``on_hand + backorder_max``, and ``on_hand`` goes negative
    when such holds are confirmed."""
    located: bool = False
    """The SKU is also stocked at locations other than the default one: this level is then
    only the default location's, and holds go through the allocation policy
    (docs/locations.md#how-each-strategy-uses-it). Read with the level, so a shop without
    locations pays no query for it."""
    locations: tuple[LocationLevel, ...] = field(default=(), compare=False, repr=False)
    """Filled by stock reads (not by a strategy's locked reads): the level at every
    location, the default one first; the counts above are then the totals over the active
    ones (docs/locations.md#totals)."""

    @property
    def available(self) -> int:
        """What a hold may still take: every strategy, admission and the API read this,
        so safety stock is kept out of the sale, and the backorder allowance in, in one
        place (may be <= 0)."""
        return self.on_hand + self.backorder_max - self.reserved - self.safety_stock

    def backordered(self, quantity: int) -> int:
        """How many of ``quantity`` units, held now on this level, are beyond its
        physical stock (on_hand less safety stock, less what is held already): the part of
        the hold that the backorder allowance pays for."""
        beyond = self.reserved + quantity - (self.on_hand - self.safety_stock)
        return min(max(beyond, 0), quantity)


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    order_id: str
    customer_id: str | None
    status: Status
    lines: tuple[Line, ...]
    expires_at_ms: int
    created_at_ms: int

    def same_request(self, lines: Sequence[Line]) -> bool:
        """An order_id replay is the same request when it asks for the same lines."""
        return sorted(self.lines, key=_by_sku) == sorted(lines, key=_by_sku)


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """A validated reservation request: lines sorted by SKU (the lock order)."""

    order_id: str
    lines: tuple[Line, ...]
    ttl_s: int
    customer_id: str | None = None
    allocation_policy: str | None = field(default=None, compare=False)
    """``priority`` or ``most_available``; None: the shop's default
    (docs/locations.md#allocation-policy)."""
    split: bool = field(default=True, compare=False)
    """False: each line from one location alone."""
    skus: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The lines' SKUs in lock order, made once: admission reads them several times per
    request (caps, the sold-out marks, the fast path's look-up)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "skus", tuple(line.sku for line in self.lines))


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    reservation: Reservation
    created: bool


@dataclass(frozen=True, slots=True)
class Movement:
    at_ms: int
    sku: str
    delta: int
    on_hand_after: int
    reason: str
    reservation_id: str | None
    location: str = DEFAULT_LOCATION_CODE
    """Where the units moved (docs/locations.md#invariants: I3 per location)."""


@dataclass(frozen=True, slots=True)
class VariantSpec:
    sku: str
    options: Mapping[str, str]
    on_hand: int


@dataclass(frozen=True, slots=True)
class ProductSpec:
    """A validated product: option axes and one variant (one SKU) per combination."""

    name: str
    options: Mapping[str, tuple[str, ...]]
    variants: tuple[VariantSpec, ...]


@dataclass(frozen=True, slots=True)
class Variant:
    sku: str
    options: Mapping[str, str]
    stock: StockLevel


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    options: Mapping[str, tuple[str, ...]]
    variants: tuple[Variant, ...] = field(default=())


def _by_sku(line: Line) -> str:
    return line.sku
