"""What the admin page shows, computed from domain values: no HTTP, no SQL.

Stock states, human wording of errors, times and links live here so the templates stay
declarative and the same rule (say, what "low stock" means) is applied by the server
when it renders a row and by the JSON the page polls for live figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

from stockguard import domain, problems
from stockguard.domain import Reservation, Status, StockLevel
from stockguard.domain.locations import Location, LocationLevel
from stockguard.service.models import breakdown

LOW_STOCK_AVAILABLE_MAX = 5
"""At most this many units available (and more than none): marked "low stock"."""

StockState = Literal["sold-out", "low", "in-stock"]

STATE_LABELS: Mapping[StockState, str] = {
    "sold-out": "Sold out",
    "low": "Low stock",
    "in-stock": "In stock",
}

BUILT_IN_REASONS = {
    "created": "Created",
    "set": "Stock set by admin",
    "sale": "Sale (reservation confirmed)",
}
"""Ledger reasons the store writes itself; adjustment reasons are shown as typed."""


def stock_state(available: int) -> StockState:
    if available <= 0:
        return "sold-out"
    if available <= LOW_STOCK_AVAILABLE_MAX:
        return "low"
    return "in-stock"


def backorder_of(level: StockLevel) -> dict[str, int]:
    """What a stock row says of backorders (docs/design.md#backorders).

    ``owed``: units sold that were never on the shelf (on_hand below 0, after confirming
    backordered holds); restocking covers them first. ``left``: units holds may still
    take beyond the shelf. Holds stop at ``available``, and the allowance is the most
    that can be beyond it, so what is left is ``available`` clamped to ``0..backorder_max``
    (safety stock and what is already held or owed beyond the shelf both come off).
    """
    return {
        "owed": max(-level.on_hand, 0),
        "allowance": level.backorder_max,
        "left": min(max(level.available, 0), level.backorder_max),
    }


def stock_json(level: StockLevel) -> dict[str, Any]:
    """One SKU's figures as the page's script reads them: the same as the server draws
    (``backorder_of`` included), so a polled row never says something else."""
    state = stock_state(level.available)
    return {
        "sku": level.sku,
        "on_hand": level.on_hand,
        "reserved": level.reserved,
        "available": level.available,
        "version": level.version,
        "state": state,
        "state_label": STATE_LABELS[state],
        **backorder_of(level),
        "locations": [location_json(at) for at in breakdown(level)],
    }


def location_json(level: LocationLevel) -> dict[str, Any]:
    """One location's figures of a SKU as the SKU page's location rows read them."""
    return {
        "sku": level.sku,
        "location": level.location,
        "on_hand": level.on_hand,
        "reserved": level.reserved,
        "available": level.available,
        "version": level.version,
        "safety_stock": level.safety_stock,
        "backorder_max": level.backorder_max,
    }


def location_rows(level: StockLevel, locations: Mapping[str, Location]) -> list[dict[str, Any]]:
    """The SKU page's stock per location (docs/locations.md): every level, the default
    one first, with its location's name and whether it sells (inactive: out of totals)."""
    rows = []
    for at in breakdown(level):
        place = locations.get(at.location)
        rows.append(
            {
                **location_json(at),
                "name": place.name if place is not None else at.location,
                "active": place.active if place is not None else True,
            }
        )
    return rows


def level_at(level: StockLevel, location: str) -> LocationLevel | None:
    return next((at for at in breakdown(level) if at.location == location), None)


status_of = problems.status_of
retry_after_s = problems.retry_after_s


_FIELD_NAMES = {
    "on_hand": "On hand",
    "expected_on_hand": "On hand when the form opened",
    "delta": "Change",
    "reason": "Reason",
    "name": "Product name",
    "initial_on_hand": "Initial on hand",
    "sku_prefix": "SKU prefix",
    "options": "Options",
    "sku": "SKU",
    "order_id": "Order",
    "status": "Status",
    "cursor": "Page",
    "search": "Search",
    "token": "Admin token",
    "safety_stock": "Safety stock",
    "backorder_max": "Backorder allowance",
    "customer_max": "Per-customer cap",
    "low_stock_threshold": "Low-stock threshold",
    "location": "Location",
    "code": "Location code",
    "location_name": "Location name",
    "priority": "Priority",
    "active": "Active",
}
for _name in ("safety_stock", "backorder_max", "customer_max", "low_stock_threshold"):
    _FIELD_NAMES[f"expected_{_name}"] = f"{_FIELD_NAMES[_name]} when the form opened"


def field_label(field_name: str) -> str:
    head, _, rest = field_name.partition(".")
    label = _FIELD_NAMES.get(head, head)
    return f"{label} ({rest})" if rest else label


def explain(error: domain.StockguardError) -> str:
    """A sentence an admin can act on, for any operating error."""
    if isinstance(error, domain.InvalidInput):
        return f"{field_label(error.field)}: {error.reason}."
    if isinstance(error, domain.UnknownSku):
        return f"No SKU {', '.join(error.skus)} exists."
    if isinstance(error, domain.DuplicateSku):
        return f"These SKUs already exist: {', '.join(error.skus)}. Choose another SKU prefix."
    if (
        isinstance(error, domain.BelowReserved)
        and error.on_hand_wanted < 0
        and not error.current.backorder_max
    ):
        return (
            f"{error.current.sku}: only {error.current.on_hand} on hand; "
            "on hand cannot go below zero."
        )
    if isinstance(error, domain.BelowReserved):
        allowance = error.current.backorder_max
        return (
            f"{error.current.sku}: on hand cannot go to {error.on_hand_wanted}, below the "
            f"{error.current.reserved} units held by open reservations"
            + (f" less the backorder allowance of {allowance}." if allowance else ".")
        )
    if isinstance(error, domain.PolicyChanged):
        return f"{error.sku}: the stock policy changed while you were editing; nothing was saved."
    if isinstance(error, domain.StockChanged):
        return (
            f"{error.current.sku}: stock changed while you were editing "
            f"(on hand is now {error.current.on_hand}, not {error.expected_on_hand})."
        )
    if isinstance(error, domain.UnknownLocation):
        return f"No location {error.code} exists."
    if isinstance(error, domain.DuplicateLocation):
        return f"A location {error.code} already exists; choose another code."
    if isinstance(error, domain.InvalidState):
        return f"That reservation is already {error.status}; nothing was changed."
    if isinstance(error, domain.ReservationNotFound):
        return "No such reservation."
    if isinstance(error, domain.Overloaded | domain.StoreUnavailable):
        return (
            "The database is busy or unreachable right now; nothing was changed. "
            f"Try again in {max(1, error.retry_after_s)} s."
        )
    return str(error)


def when(epoch_ms: int) -> str:
    """A time as the page shows it: UTC, to the second."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def admin_url(path: str, **params: str | None) -> str:
    """A link under /admin; empty parameters are left out."""
    kept = {name: value for name, value in params.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


def options_text(options: Mapping[str, str]) -> str:
    return " · ".join(f"{axis} {value}" for axis, value in options.items())


def reservation_view(reservation: Reservation, now_ms: int) -> dict[str, Any]:
    overdue = reservation.status is Status.HELD and reservation.expires_at_ms <= now_ms
    return {
        "id": reservation.id,
        "order_id": reservation.order_id,
        "customer_id": reservation.customer_id or "",
        "status": reservation.status.value,
        "overdue": overdue,
        "items": [(line.sku, line.quantity, line.backordered) for line in reservation.lines],
        "created": when(reservation.created_at_ms),
        "created_iso": iso(reservation.created_at_ms),
        "expires": when(reservation.expires_at_ms),
        "releasable": reservation.status is Status.HELD,
    }


def explain_backorder_cut(error: domain.BelowReserved, wanted: int) -> str:
    """The policy write's 409 below-reserved (``domain.check_backorder_cut``) in the
    words of the form: the allowance asked for, and what already stands beyond the shelf
    (docs/design.md#backorders: an allowance cut never strands holds it granted)."""
    level = error.current
    beyond = level.reserved - level.on_hand
    return (
        f"Backorder allowance: cannot go to {wanted}: {beyond} unit(s) of it are in use "
        f"({level.reserved} reserved against {level.on_hand} on hand). Restock, or let "
        "those holds end, first. Nothing was saved."
    )


def movement_reason(reason: str, reservation_id: str | None) -> str:
    if reason in BUILT_IN_REASONS and (reason != "sale" or reservation_id):
        return BUILT_IN_REASONS[reason]
    return reason
