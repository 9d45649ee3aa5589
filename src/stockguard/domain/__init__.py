"""The rules of stock, holds and products, with no I/O.

Everything here is synchronous and pure so that a rule checked here cannot go stale
behind an ``await``: the engine and the strategies read state from a store, hand it to
these functions, and write back exactly what they decide.

Error tree (every operating error a caller can see)::

    StockguardError
    ├── InvalidInput            bad argument: field + reason          (HTTP 422)
    ├── UnknownSku              skus                                  (404)
    ├── DuplicateSku            skus already exist                    (409)
    ├── ProductNotFound         product_id                            (404)
    ├── ReservationNotFound     reservation_id                        (404)
    ├── OutOfStock              shortfalls: (sku, requested, available)(409)
    ├── IdempotencyConflict     order_id reused with other lines      (409)
    ├── InvalidState            transition from a terminal state      (409)
    ├── ReservationExpired      confirm after expires_at              (410)
    ├── StockChanged            expected_on_hand != current           (409)
    ├── BelowReserved           on_hand would drop under reserved     (409)
    ├── Overloaded              admission refused; retry_after_s      (429)
    └── StoreUnavailable        backend down, busy or timed out       (503)
"""

from __future__ import annotations

import enum
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Limits (docs/design.md#limits). Every input is checked against these before any write.
SKU_LEN_MAX = 64
LINES_MAX = 100
QUANTITY_MAX = 1_000_000
TTL_S_MIN = 1
TTL_S_MAX = 86_400
TTL_S_DEFAULT = 900
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


class Status(enum.StrEnum):
    HELD = "held"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self is not Status.HELD


# ---------------------------------------------------------------------------- errors


class StockguardError(Exception):
    """Base of every operating error; ``kind`` is stable and names the problem type."""

    kind = "error"

    def __reduce__(self) -> tuple[Any, ...]:
        # Each subclass's __init__ takes its data, not the message that ends up in
        # ``args``, so the default (call the class with ``args``) cannot rebuild it. A batch
        # answers several waiters with copies of one error (each raise grows the instance's
        # own traceback, so waiters must not share one); copy and pickle come through here.
        return (_restore_error, (type(self), self.args), self.__dict__)


def _restore_error(cls: type[StockguardError], args: tuple[Any, ...]) -> StockguardError:
    error = cls.__new__(cls)
    error.args = args
    return error


class InvalidInput(StockguardError):
    kind = "invalid-input"

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class UnknownSku(StockguardError):
    kind = "unknown-sku"

    def __init__(self, skus: Iterable[str]) -> None:
        self.skus = tuple(sorted(set(skus)))
        super().__init__(f"unknown sku: {', '.join(self.skus)}")


class DuplicateSku(StockguardError):
    kind = "duplicate-sku"

    def __init__(self, skus: Iterable[str]) -> None:
        self.skus = tuple(sorted(set(skus)))
        super().__init__(f"sku already exists: {', '.join(self.skus)}")


class ProductNotFound(StockguardError):
    kind = "product-not-found"

    def __init__(self, product_id: str) -> None:
        super().__init__(f"no product {product_id!r}")
        self.product_id = product_id


class ReservationNotFound(StockguardError):
    kind = "reservation-not-found"

    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"no reservation {reservation_id!r}")
        self.reservation_id = reservation_id


@dataclass(frozen=True, slots=True)
class Shortfall:
    sku: str
    requested: int
    available: int


class OutOfStock(StockguardError):
    kind = "out-of-stock"

    def __init__(self, shortfalls: Sequence[Shortfall]) -> None:
        # The message is built only when read: a flash sale refuses thousands of buyers a
        # second and most refusals are counted, never printed.
        assert shortfalls, "an out-of-stock answer names at least one line"
        self.shortfalls = tuple(shortfalls)

    def __str__(self) -> str:
        return "; ".join(
            f"{s.sku}: requested {s.requested}, available {s.available}" for s in self.shortfalls
        )


class IdempotencyConflict(StockguardError):
    kind = "idempotency-conflict"

    def __init__(self, order_id: str, reservation_id: str) -> None:
        super().__init__(f"order {order_id!r} was reserved with other lines")
        self.order_id = order_id
        self.reservation_id = reservation_id


class InvalidState(StockguardError):
    kind = "invalid-state"

    def __init__(self, reservation_id: str, status: Status, action: str) -> None:
        super().__init__(f"cannot {action} reservation {reservation_id!r}: it is {status}")
        self.reservation_id = reservation_id
        self.status = status
        self.action = action


class ReservationExpired(StockguardError):
    kind = "reservation-expired"

    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"reservation {reservation_id!r} expired")
        self.reservation_id = reservation_id


class StockChanged(StockguardError):
    kind = "stock-changed"

    def __init__(self, current: StockLevel, expected_on_hand: int) -> None:
        super().__init__(
            f"{current.sku}: on_hand is {current.on_hand}, not the expected {expected_on_hand}"
        )
        self.current = current
        self.expected_on_hand = expected_on_hand


class BelowReserved(StockguardError):
    kind = "below-reserved"

    def __init__(self, current: StockLevel, on_hand_wanted: int) -> None:
        super().__init__(
            f"{current.sku}: on_hand {on_hand_wanted} is below reserved {current.reserved}"
        )
        self.current = current
        self.on_hand_wanted = on_hand_wanted


class Overloaded(StockguardError):
    kind = "overloaded"

    def __init__(self, reason: str, retry_after_s: int = 1) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class StoreUnavailable(StockguardError):
    kind = "store-unavailable"

    def __init__(self, reason: str, retry_after_s: int = 1) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class StockLevel:
    sku: str
    on_hand: int
    reserved: int
    version: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


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

    @property
    def skus(self) -> tuple[str, ...]:
        return tuple(line.sku for line in self.lines)


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


# ---------------------------------------------------------------------------- validation


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
) -> ReserveRequest:
    """Checks a reservation request against every limit; raises before anything is written."""
    order = _validate_text(order_id, "order_id", ORDER_ID_LEN_MAX)
    customer = (
        None
        if customer_id is None
        else _validate_text(customer_id, "customer_id", CUSTOMER_ID_LEN_MAX)
    )
    ttl = _validate_int(ttl_s, "ttl_seconds", TTL_S_MIN, TTL_S_MAX)
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
        if isinstance(raw, Line):
            sku_raw, quantity_raw = raw.sku, raw.quantity
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
        checked.append(Line(sku, quantity))
    if len(checked) > 1:
        checked.sort(key=_by_sku)
    return ReserveRequest(order, tuple(checked), ttl, customer)


# ---------------------------------------------------------------------------- stock rules


def shortfalls(levels: Mapping[str, StockLevel], lines: Iterable[Line]) -> tuple[Shortfall, ...]:
    """Every line that the given stock cannot fill; empty when the whole request fits."""
    missing = [line.sku for line in lines if line.sku not in levels]
    if missing:
        raise UnknownSku(missing)
    return tuple(
        Shortfall(line.sku, line.quantity, max(levels[line.sku].available, 0))
        for line in lines
        if levels[line.sku].available < line.quantity
    )


def hold(levels: Mapping[str, StockLevel], lines: Iterable[Line]) -> dict[str, StockLevel]:
    """The stock after holding ``lines``, all or nothing (raises OutOfStock)."""
    line_tuple = tuple(lines)
    short = shortfalls(levels, line_tuple)
    if short:
        raise OutOfStock(short)
    after = dict(levels)
    _take(after, line_tuple)
    return after


def _take(levels: dict[str, StockLevel], lines: Iterable[Line]) -> None:
    """Moves ``lines`` into ``reserved``, in place; the caller checked that they fit."""
    for line in lines:
        level = levels[line.sku]
        levels[line.sku] = StockLevel(
            level.sku, level.on_hand, level.reserved + line.quantity, level.version + 1
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one request of a batch: held (``shortfall`` empty) or refused."""

    request: ReserveRequest
    shortfall: tuple[Shortfall, ...]

    @property
    def held(self) -> bool:
        return not self.shortfall


def decide_in_order(
    levels: Mapping[str, StockLevel], requests: Sequence[ReserveRequest]
) -> tuple[dict[str, StockLevel], tuple[Decision, ...]]:
    """Grants requests strictly in arrival order, each all-or-nothing.

    A request that cannot be filled is refused at its turn and the next one in line gets
    what is left: first come, first served, and no request is starved by a larger one
    behind it. Unknown SKUs must be filtered out by the caller.
    """
    current = dict(levels)
    decisions: list[Decision] = []
    for request in requests:
        # ``hold`` without its exception: a sold-out batch refuses a thousand requests here.
        short = shortfalls(current, request.lines)
        if not short:
            _take(current, request.lines)
        decisions.append(Decision(request, short))
    return current, tuple(decisions)


def check_transition(reservation: Reservation, target: Status, now_ms: int) -> bool:
    """Whether moving ``reservation`` to ``target`` must write anything.

    Returns False for a replay (already in ``target``: confirm and release are replay-safe),
    True when the transition applies, and raises when it is not allowed.
    """
    if reservation.status is target:
        return False
    if target is Status.RELEASED and reservation.status is Status.EXPIRED:
        return False  # the stock is already back: what the caller asked for is done
    if reservation.status.is_terminal:
        if target is Status.CONFIRMED and reservation.status is Status.EXPIRED:
            raise ReservationExpired(reservation.id)
        action = {Status.CONFIRMED: "confirm", Status.RELEASED: "release"}.get(target, "expire")
        raise InvalidState(reservation.id, reservation.status, action)
    if target is Status.CONFIRMED and now_ms >= reservation.expires_at_ms:
        raise ReservationExpired(reservation.id)
    if target is Status.EXPIRED and now_ms < reservation.expires_at_ms:
        raise InvalidState(reservation.id, reservation.status, "expire")
    return True


def check_on_hand_change(
    current: StockLevel, on_hand_new: int, expected_on_hand: int | None
) -> None:
    """An admin write applies only to the stock the admin saw (docs/design.md#seed-001)."""
    if expected_on_hand is not None and current.on_hand != expected_on_hand:
        raise StockChanged(current, expected_on_hand)
    if on_hand_new < current.reserved:
        raise BelowReserved(current, on_hand_new)
    if on_hand_new > ON_HAND_MAX:
        raise InvalidInput("on_hand", f"must be at most {ON_HAND_MAX}")


# ---------------------------------------------------------------------------- products


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").upper() or "X"


def plan_product(
    name: object,
    options: Mapping[str, Sequence[str]] | None = None,
    variants: Sequence[VariantSpec] | None = None,
    initial_on_hand: object = None,
    sku_prefix: str | None = None,
) -> ProductSpec:
    """Validates a product and lists its variants.

    A product without options is the product of zero axes: exactly one variant with no
    option values, so the rest of the code never asks whether a product "has options".
    Without explicit variants every combination of option values becomes a SKU named
    ``PREFIX-VALUE-VALUE`` (prefix: the slugged name unless given).
    """
    product_name = _validate_text(name, "name", PRODUCT_NAME_LEN_MAX)
    on_hand_default = (
        0 if initial_on_hand is None else validate_on_hand(initial_on_hand, "initial_on_hand")
    )
    # Every size is checked before the items it counts are read, and the number of
    # combinations is computed from the axis sizes before any is built: 8 axes of 100
    # values would otherwise make 10**16 of them before the limit is looked at.
    if options is not None and len(options) > OPTION_AXES_MAX:
        raise InvalidInput("options", f"at most {OPTION_AXES_MAX} axes")
    if variants is not None and len(variants) > VARIANTS_MAX:
        raise InvalidInput("variants", f"at most {VARIANTS_MAX}")
    axes: dict[str, tuple[str, ...]] = {}
    for axis, values in (options or {}).items():
        _validate_text(axis, "options", OPTION_TEXT_LEN_MAX)
        if isinstance(values, str) or not 1 <= len(values) <= OPTION_VALUES_MAX:
            raise InvalidInput(f"options.{axis}", f"must list 1-{OPTION_VALUES_MAX} values")
        checked = tuple(_validate_text(v, f"options.{axis}", OPTION_TEXT_LEN_MAX) for v in values)
        if len(set(checked)) != len(checked):
            raise InvalidInput(f"options.{axis}", "values must be distinct")
        axes[axis] = checked

    if variants:
        planned = tuple(_check_variant(i, v, axes) for i, v in enumerate(variants))
    else:
        combination_count = math.prod(len(values) for values in axes.values())
        if combination_count > VARIANTS_MAX:
            raise InvalidInput("options", f"make {combination_count} variants, max {VARIANTS_MAX}")
        prefix = _slug(sku_prefix or product_name)
        planned = tuple(
            VariantSpec(
                validate_sku("-".join([prefix, *(_slug(v) for v in combo)]), "options"),
                dict(zip(axes, combo, strict=True)),
                on_hand_default,
            )
            for combo in itertools.product(*axes.values())
        )
    skus = [v.sku for v in planned]
    if len(set(skus)) != len(skus):
        raise InvalidInput("variants", "two variants share a sku")
    combos = [tuple(sorted(v.options.items())) for v in planned]
    if len(set(combos)) != len(combos):
        raise InvalidInput("variants", "two variants share the same option values")
    return ProductSpec(product_name, axes, planned)


def _check_variant(
    index: int, variant: VariantSpec, axes: Mapping[str, Sequence[str]]
) -> VariantSpec:
    sku = validate_sku(variant.sku, f"variants[{index}].sku")
    if set(variant.options) != set(axes):
        raise InvalidInput(
            f"variants[{index}].options", f"must name exactly the axes {sorted(axes)}"
        )
    for axis, value in variant.options.items():
        if value not in axes[axis]:
            raise InvalidInput(
                f"variants[{index}].options.{axis}", f"{value!r} is not a listed value"
            )
    on_hand = validate_on_hand(variant.on_hand, f"variants[{index}].on_hand")
    return VariantSpec(sku, dict(variant.options), on_hand)
