"""Kits (bundles): a SKU sold as a fixed set of component SKUs. Pure, no I/O.

A kit has no stock of its own. Reserving it holds its components, and the only correct
way to do that under concurrency is to turn the request into component lines *before* any
strategy sees it, summing the demand of every line that touches a component: a cart with
a kit (2 × A + 1 × B) and a loose A asks for 3 A in one atomic hold. Adding the lines up
later, or checking each line on its own, is the bug that oversells shared components
(docs/design.md#kits). After ``expand`` a kit request is an ordinary request, so every
strategy, backend, confirm, release and expiry works on it unchanged.

Kits do not nest (a component is a SKU with stock), and a kit's definition never changes
once made: a process may keep every kit it has seen, and be right forever.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stockguard.domain.errors import InvalidInput
from stockguard.domain.model import LINES_MAX, QUANTITY_MAX, Line, ReserveRequest, StockLevel
from stockguard.domain.validation import validate_lines, validate_sku

KIT_COMPONENTS_MAX = 20
"""Components one kit may have: a kit line expands into at most this many lines."""


@dataclass(frozen=True, slots=True)
class Kit:
    sku: str
    components: tuple[Line, ...]
    """Each component SKU once, with the units one kit takes; sorted by SKU."""


def validate_kit(sku: object, components: Sequence[Line] | Sequence[tuple[str, int]]) -> Kit:
    """A kit definition, checked against every limit before anything is written."""
    kit_sku = validate_sku(sku)
    if not isinstance(components, Sequence) or isinstance(components, str):
        raise InvalidInput("components", "must be a list")
    if not 1 <= len(components) <= KIT_COMPONENTS_MAX:
        raise InvalidInput("components", f"must hold 1-{KIT_COMPONENTS_MAX} components")
    try:
        lines = validate_lines(components)
    except InvalidInput as error:  # the body names them components, not items
        raise InvalidInput(error.field.replace("items", "components", 1), error.reason) from None
    if any(line.sku == kit_sku for line in lines):
        raise InvalidInput("components", "a kit cannot contain itself")
    return Kit(kit_sku, lines)


def expand(request: ReserveRequest, kits: Mapping[str, Kit]) -> ReserveRequest:
    """The request with every kit line replaced by its components, and the demand for each
    SKU summed across all lines (kit and loose alike), sorted by SKU (the lock order)."""
    demand: dict[str, int] = {}
    pins: dict[str, str | None] = {}
    for line in request.lines:
        kit = kits.get(line.sku)
        parts = (
            [(line.sku, line.quantity)]
            if kit is None
            else [
                (component.sku, component.quantity * line.quantity) for component in kit.components
            ]
        )
        for sku, quantity in parts:
            demand[sku] = demand.get(sku, 0) + quantity
            # A pinned kit is collected where it is pinned: its components are pinned there
            # too (docs/locations.md); one SKU cannot be asked for at two places at once.
            if sku in pins and pins[sku] != line.location:
                raise InvalidInput("items", f"{sku} is asked for at more than one location")
            pins[sku] = line.location
    if len(demand) > LINES_MAX:
        raise InvalidInput("items", f"the kits expand into more than {LINES_MAX} SKUs")
    for sku, quantity in demand.items():
        if quantity > QUANTITY_MAX:
            raise InvalidInput("items", f"{sku}: {quantity} units exceed {QUANTITY_MAX}")
    lines = tuple(Line(sku, demand[sku], 0, pins[sku]) for sku in sorted(demand))
    return ReserveRequest(
        request.order_id,
        lines,
        request.ttl_s,
        request.customer_id,
        request.allocation_policy,
        request.split,
    )


def kit_available(kit: Kit, levels: Mapping[str, StockLevel]) -> int:
    """How many whole kits the components' available stock makes: the least, over the
    components, of ``available // quantity`` (0 when a component is missing)."""
    return min(
        (max(levels[c.sku].available, 0) // c.quantity if c.sku in levels else 0)
        for c in kit.components
    )
