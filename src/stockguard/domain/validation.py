"""Input checked against the limits before anything is written (docs/design.md#limits)."""

from __future__ import annotations

from collections.abc import Sequence

from stockguard.domain.errors import InvalidInput
from stockguard.domain.model import (
    _CONTROL_CHARS,
    CUSTOMER_ID_LEN_MAX,
    ID_LEN_MAX,
    LINES_MAX,
    ON_HAND_MAX,
    ORDER_ID_LEN_MAX,
    PAGE_LIMIT_MAX,
    QUANTITY_MAX,
    REASON_LEN_MAX,
    SKU_LEN_MAX,
    TTL_S_DEFAULT,
    TTL_S_MAX,
    TTL_S_MIN,
    Line,
    ReserveRequest,
    _by_sku,
)


def validate_sku(sku: object, field_name: str = "sku") -> str:
    if not isinstance(sku, str):
        raise InvalidInput(field_name, "must be a string")
    if not 1 <= len(sku) <= SKU_LEN_MAX:
        raise InvalidInput(field_name, f"must be 1-{SKU_LEN_MAX} characters")
    if _CONTROL_CHARS.search(sku):
        raise InvalidInput(field_name, "must not contain control characters")
    return sku


def _validate_int(value: object, field_name: str, low: int, high: int) -> int:
    # bool is an int in Python; a JSON true must not become a quantity of 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(field_name, "must be an integer")
    if not low <= value <= high:
        raise InvalidInput(field_name, f"must be between {low} and {high}")
    return value


def _validate_text(value: object, field_name: str, length_max: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field_name, "must be a string")
    if not 1 <= len(value) <= length_max:
        raise InvalidInput(field_name, f"must be 1-{length_max} characters")
    if _CONTROL_CHARS.search(value):
        raise InvalidInput(field_name, "must not contain control characters")
    return value


def validate_filter_text(value: object, field_name: str, length_max: int) -> str:
    """Text a listing is filtered by: what a stored value could be (a search may be a
    part of one), so never a control character; no database statement sees the rest."""
    return _validate_text(value, field_name, length_max)


def validate_on_hand(on_hand: object, field_name: str = "on_hand") -> int:
    return _validate_int(on_hand, field_name, 0, ON_HAND_MAX)


def validate_delta(delta: object) -> int:
    value = _validate_int(delta, "delta", -ON_HAND_MAX, ON_HAND_MAX)
    if value == 0:
        raise InvalidInput("delta", "must not be zero")
    return value


def validate_reason(reason: object) -> str:
    return _validate_text(reason, "reason", REASON_LEN_MAX)


def validate_reservation_id(reservation_id: object) -> str:
    return _validate_text(reservation_id, "reservation_id", ID_LEN_MAX)


def validate_page_limit(limit: object) -> int:
    return _validate_int(limit, "limit", 1, PAGE_LIMIT_MAX)


def validate_reserve(
    order_id: object,
    lines: Sequence[Line] | Sequence[tuple[str, int]],
    ttl_s: object = TTL_S_DEFAULT,
    customer_id: object = None,
    allocation_policy: object = None,
    split: object = True,
) -> ReserveRequest:
    """Checks a reservation request against every limit; raises before anything is written.
    ``allocation_policy`` and ``split``, and a ``Line``'s ``location``, choose where a SKU
    stocked at several locations draws from (docs/locations.md#allocation-policy)."""
    order = _validate_text(order_id, "order_id", ORDER_ID_LEN_MAX)
    customer = (
        None
        if customer_id is None
        else _validate_text(customer_id, "customer_id", CUSTOMER_ID_LEN_MAX)
    )
    ttl = validate_ttl(ttl_s)
    if allocation_policy is not None and allocation_policy not in ALLOCATION_POLICIES:
        raise InvalidInput("allocation_policy", f"must be one of {', '.join(ALLOCATION_POLICIES)}")
    if not isinstance(split, bool):
        raise InvalidInput("split", "must be true or false")
    if allocation_policy is None and split:
        return ReserveRequest(order, validate_lines(lines), ttl, customer)
    return ReserveRequest(order, validate_lines(lines), ttl, customer, allocation_policy, split)


ALLOCATION_POLICIES = ("most_available", "priority")
"""The names of ``locations.AllocationPolicy`` (kept here: locations imports this module's
neighbours, and the check runs on every request that names one)."""


def validate_ttl(ttl_s: object) -> int:
    """A hold's time to live in seconds (a new hold's, or an extension's)."""
    return _validate_int(ttl_s, "ttl_seconds", TTL_S_MIN, TTL_S_MAX)


def validate_lines(lines: Sequence[Line] | Sequence[tuple[str, int]]) -> tuple[Line, ...]:
    """1-100 lines, each SKU once, quantities 1-1,000,000; sorted by SKU (the lock order).
    A hold's lines, and the lines a partial release gives back."""
    # ``type(...) in`` before the ABC check: every request of a flash sale passes here.
    if type(lines) not in (list, tuple) and (
        not isinstance(lines, Sequence) or isinstance(lines, str)
    ):
        raise InvalidInput("items", "must be a list")
    if not 1 <= len(lines) <= LINES_MAX:
        raise InvalidInput("items", f"must hold 1-{LINES_MAX} lines")
    checked: list[Line] = []
    seen: set[str] = set()
    for index, raw in enumerate(lines):
        location = None
        if isinstance(raw, Line):
            sku_raw, quantity_raw = raw.sku, raw.quantity
            if raw.location is not None:
                location = validate_sku(raw.location, f"items[{index}].location")
        elif isinstance(raw, tuple) and len(raw) == 2:
            sku_raw, quantity_raw = raw
        else:
            raise InvalidInput(f"items[{index}]", "must be a (sku, quantity) line")
        # The common case is checked inline; anything else goes through the full check,
        # which names the field (the f-strings are built only then).
        if (
            type(sku_raw) is str
            and 1 <= len(sku_raw) <= SKU_LEN_MAX
            and _CONTROL_CHARS.search(sku_raw) is None
        ):
            sku = sku_raw
        else:
            sku = validate_sku(sku_raw, f"items[{index}].sku")
        if type(quantity_raw) is int and 1 <= quantity_raw <= QUANTITY_MAX:
            quantity = quantity_raw
        else:
            quantity = _validate_int(quantity_raw, f"items[{index}].quantity", 1, QUANTITY_MAX)
        if sku in seen:
            raise InvalidInput(f"items[{index}].sku", f"{sku!r} appears more than once")
        seen.add(sku)
        checked.append(
            Line(sku, quantity) if location is None else Line(sku, quantity, 0, location)
        )
    if len(checked) > 1:
        checked.sort(key=_by_sku)
    return tuple(checked)
