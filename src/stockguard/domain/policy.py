"""A SKU's stock policy and the decisions it takes part in: pure functions, no I/O.

The policy (docs/design.md#stock-policy) is what a shop does with stock besides selling
it: ``safety_stock`` units are never held (``StockLevel.available`` subtracts them, so
every strategy and admission keep them out of the sale in one place), ``customer_max``
caps what one customer may hold and have bought of the SKU, ``low_stock_threshold``
drives the low-stock events, and ``backorder_max`` units may be held beyond on_hand
(docs/design.md#backorders).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stockguard.domain.errors import BelowReserved, CustomerLimit, InvalidInput, PolicyChanged
from stockguard.domain.model import ON_HAND_MAX, QUANTITY_MAX, ReserveRequest, StockLevel

BACKORDER_MAX_MAX = ON_HAND_MAX
"""The largest backorder allowance: as many units as a SKU may have on hand."""
CUSTOMER_MAX_MAX = QUANTITY_MAX
"""The largest cap: a cap above what one line may ask for caps nothing."""


@dataclass(frozen=True, slots=True)
class Policy:
    """One SKU's policy as stored; the defaults are "no policy" (what every SKU had)."""

    safety_stock: int = 0
    backorder_max: int = 0
    customer_max: int | None = None
    low_stock_threshold: int | None = None


def validate_policy(policy: Policy) -> Policy:
    """Every field in range, before any write (the HTTP model checks types only)."""
    if not 0 <= policy.safety_stock <= ON_HAND_MAX:
        raise InvalidInput("safety_stock", f"must be 0-{ON_HAND_MAX}")
    if not 0 <= policy.backorder_max <= BACKORDER_MAX_MAX:
        raise InvalidInput("backorder_max", f"must be 0-{BACKORDER_MAX_MAX}")
    if policy.customer_max is not None and not 0 <= policy.customer_max <= CUSTOMER_MAX_MAX:
        raise InvalidInput("customer_max", f"must be null or 0-{CUSTOMER_MAX_MAX}")
    if policy.low_stock_threshold is not None and not (
        0 <= policy.low_stock_threshold <= ON_HAND_MAX
    ):
        raise InvalidInput("low_stock_threshold", f"must be null or 0-{ON_HAND_MAX}")
    return policy


def check_policy_change(sku: str, current: Policy, expected: Policy | None) -> None:
    """A policy write applies only to the policy the admin saw (compare-and-set, as
    ``check_on_hand_change`` for on_hand): two admins editing at once cannot silently
    overwrite each other's safety stock or cap."""
    if expected is not None and expected != current:
        raise PolicyChanged(sku, current)


def check_backorder_cut(level: StockLevel, policy: Policy) -> None:
    """An allowance cut below the backorders already held is refused: I1,
    ``reserved <= on_hand + backorder_max``, holds after a policy write too (the admin
    restocks, or waits for those holds to end, first)."""
    if level.reserved > level.on_hand + policy.backorder_max:
        raise BelowReserved(
            level,
            level.on_hand,
            f"{level.sku}: backorder_max {policy.backorder_max} is below the"
            f" {level.reserved - level.on_hand} units held beyond on_hand {level.on_hand}",
        )


CustomerUnits = Mapping[tuple[str, str], int]
"""(customer_id, sku) -> units that customer holds or bought of that SKU."""


def capped_pairs(
    levels: Mapping[str, StockLevel], requests: Sequence[ReserveRequest]
) -> list[tuple[str, str]]:
    """The (customer_id, sku) pairs whose counts the requests' caps need, sorted; empty
    (no query at all) when no SKU of the requests has a cap."""
    pairs = {
        (request.customer_id, sku)
        for request in requests
        if request.customer_id is not None
        for sku in request.skus
        if (level := levels.get(sku)) is not None and level.customer_max is not None
    }
    return sorted(pairs)


def customer_refusal(
    levels: Mapping[str, StockLevel], units: CustomerUnits, request: ReserveRequest
) -> CustomerLimit | InvalidInput | None:
    """Why ``request`` may not be held for its customer, or None.

    ``units`` are the customer's counts read where the SKU rows are locked (or atomically
    with the hold): then no two holds of one customer can both pass a cap. A capped SKU
    asked for without a ``customer_id`` is invalid input: a cap nobody can be counted
    against would cap nothing. Returns the error rather than raising it: a batch answers
    each request on its own.
    """
    wanted: dict[str, int] = {}
    for line in request.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    for sku, quantity in wanted.items():
        level = levels.get(sku)
        if level is None or level.customer_max is None:
            continue
        if request.customer_id is None:
            return InvalidInput("customer_id", f"{sku} is capped per customer: name the customer")
        have = units.get((request.customer_id, sku), 0)
        if have + quantity > level.customer_max:
            return CustomerLimit(sku, request.customer_id, level.customer_max, have, quantity)
    return None


def count_hold(units: dict[tuple[str, str], int], request: ReserveRequest) -> None:
    """Adds a granted ``request`` to the running counts, in place (a batch decides the
    next request of the same customer on them)."""
    if request.customer_id is None:
        return
    for line in request.lines:
        key = (request.customer_id, line.sku)
        units[key] = units.get(key, 0) + line.quantity
