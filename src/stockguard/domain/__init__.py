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

The package is split by job, and every name is importable from ``stockguard.domain``:
``model`` (limits, statuses, values), ``errors``, ``validation``, ``rules`` (the decisions:
what a hold takes, which requests of a batch are granted, how a reservation ends, an
order_id replay or conflict) and ``products``.
"""

from __future__ import annotations

from stockguard.domain.errors import (
    BelowReserved,
    CustomerLimit,
    DuplicateLocation,
    DuplicateSku,
    IdempotencyConflict,
    InvalidInput,
    InvalidState,
    OutOfStock,
    Overloaded,
    PolicyChanged,
    ProductNotFound,
    ReservationExpired,
    ReservationNotFound,
    Shortfall,
    StockChanged,
    StockguardError,
    StoreUnavailable,
    UnknownLocation,
    UnknownSku,
)
from stockguard.domain.model import (
    CURSOR_DIGITS_MAX,
    CUSTOMER_ID_LEN_MAX,
    DEFAULT_LOCATION_CODE,
    HOLD_LIFETIME_S_MAX,
    ID_LEN_MAX,
    LINES_MAX,
    ON_HAND_MAX,
    OPTION_AXES_MAX,
    OPTION_TEXT_LEN_MAX,
    OPTION_VALUES_MAX,
    ORDER_ID_LEN_MAX,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    PRODUCT_NAME_LEN_MAX,
    QUANTITY_MAX,
    REASON_LEN_MAX,
    SKU_LEN_MAX,
    STOCK_QUERY_SKUS_MAX,
    TEXT_FORBIDDEN,
    TTL_S_DEFAULT,
    TTL_S_MAX,
    TTL_S_MIN,
    VARIANTS_MAX,
    Allocation,
    Line,
    Movement,
    Product,
    ProductSpec,
    Reservation,
    ReserveOutcome,
    ReserveRequest,
    Status,
    StockLevel,
    Variant,
    VariantSpec,
)
from stockguard.domain.policy import (
    CustomerUnits,
    Policy,
    capped_pairs,
    check_backorder_cut,
    check_policy_change,
    count_hold,
    customer_refusal,
    validate_policy,
)
from stockguard.domain.products import (
    plan_product,
)
from stockguard.domain.rules import (
    Decision,
    Ending,
    Extension,
    PartRelease,
    backordered,
    check_on_hand_change,
    check_transition,
    decide_in_order,
    ending,
    extension,
    hold,
    new_reservation,
    refusal,
    release_part,
    remaining_lines,
    replay_or_conflict,
    shortfalls,
    shrink_allocations,
)
from stockguard.domain.validation import (
    validate_delta,
    validate_filter_text,
    validate_lines,
    validate_on_hand,
    validate_page_limit,
    validate_reason,
    validate_reservation_id,
    validate_reserve,
    validate_sku,
    validate_ttl,
)

__all__ = [
    "CURSOR_DIGITS_MAX",
    "CUSTOMER_ID_LEN_MAX",
    "DEFAULT_LOCATION_CODE",
    "HOLD_LIFETIME_S_MAX",
    "ID_LEN_MAX",
    "LINES_MAX",
    "ON_HAND_MAX",
    "OPTION_AXES_MAX",
    "OPTION_TEXT_LEN_MAX",
    "OPTION_VALUES_MAX",
    "ORDER_ID_LEN_MAX",
    "PAGE_LIMIT_DEFAULT",
    "PAGE_LIMIT_MAX",
    "PRODUCT_NAME_LEN_MAX",
    "QUANTITY_MAX",
    "REASON_LEN_MAX",
    "SKU_LEN_MAX",
    "STOCK_QUERY_SKUS_MAX",
    "TEXT_FORBIDDEN",
    "TTL_S_DEFAULT",
    "TTL_S_MAX",
    "TTL_S_MIN",
    "VARIANTS_MAX",
    "Allocation",
    "BelowReserved",
    "CustomerLimit",
    "CustomerUnits",
    "Decision",
    "DuplicateLocation",
    "DuplicateSku",
    "Ending",
    "Extension",
    "IdempotencyConflict",
    "InvalidInput",
    "InvalidState",
    "Line",
    "Movement",
    "OutOfStock",
    "Overloaded",
    "PartRelease",
    "Policy",
    "PolicyChanged",
    "Product",
    "ProductNotFound",
    "ProductSpec",
    "Reservation",
    "ReservationExpired",
    "ReservationNotFound",
    "ReserveOutcome",
    "ReserveRequest",
    "Shortfall",
    "Status",
    "StockChanged",
    "StockLevel",
    "StockguardError",
    "StoreUnavailable",
    "UnknownLocation",
    "UnknownSku",
    "Variant",
    "VariantSpec",
    "backordered",
    "capped_pairs",
    "check_backorder_cut",
    "check_on_hand_change",
    "check_policy_change",
    "check_transition",
    "count_hold",
    "customer_refusal",
    "decide_in_order",
    "ending",
    "extension",
    "hold",
    "new_reservation",
    "plan_product",
    "refusal",
    "release_part",
    "remaining_lines",
    "replay_or_conflict",
    "shortfalls",
    "shrink_allocations",
    "validate_delta",
    "validate_filter_text",
    "validate_lines",
    "validate_on_hand",
    "validate_page_limit",
    "validate_policy",
    "validate_reason",
    "validate_reservation_id",
    "validate_reserve",
    "validate_sku",
    "validate_ttl",
]
