"""The error tree (see ``stockguard.domain``): every operating error a caller can see."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stockguard.domain.model import Status, StockLevel


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


class UnknownLocation(StockguardError):
    """No location has this code (docs/locations.md)."""

    kind = "unknown-location"

    def __init__(self, code: str) -> None:
        super().__init__(f"no location {code!r}")
        self.code = code


class DuplicateLocation(StockguardError):
    kind = "duplicate-location"

    def __init__(self, code: str) -> None:
        super().__init__(f"location already exists: {code!r}")
        self.code = code


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


class CustomerLimit(StockguardError):
    """A hold would take one customer past a SKU's ``customer_max``
    (docs/design.md#per-customer-caps)."""

    kind = "customer-limit"

    def __init__(self, sku: str, customer_id: str, limit: int, units: int, requested: int) -> None:
        super().__init__(
            f"{sku}: customer {customer_id!r} holds or bought {units} of at most {limit},"
            f" requested {requested}"
        )
        self.sku = sku
        self.customer_id = customer_id
        self.limit = limit
        self.units = units
        self.requested = requested


class PolicyChanged(StockguardError):
    """A policy write named the policy it saw and the stored one differs (the same
    compare-and-set as ``StockChanged``, for docs/design.md#stock-policy)."""

    kind = "policy-changed"

    def __init__(self, sku: str, current: Any) -> None:
        super().__init__(f"{sku}: the policy changed meanwhile")
        self.sku = sku
        self.current = current


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

    def __init__(self, current: StockLevel, on_hand_wanted: int, detail: str = "") -> None:
        super().__init__(
            detail
            or f"{current.sku}: on_hand {on_hand_wanted} is below reserved {current.reserved}"
            + (f" less backorder_max {current.backorder_max}" if current.backorder_max else "")
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
