"""stockguard: inventory reservations that never oversell, fast on a hot SKU.

Quick start::

    from stockguard import Engine

    async with await Engine.open("sqlite:///./shop.db") as engine:
        await engine.set_on_hand("TEE-S-RED", 10)
        hold = await engine.reserve("order-1", [("TEE-S-RED", 2)], ttl_s=900)
        await engine.confirm(hold.reservation.id)
"""

from stockguard.admission import AdmissionLimits
from stockguard.domain import (
    Allocation,
    BelowReserved,
    CustomerLimit,
    DuplicateLocation,
    DuplicateSku,
    IdempotencyConflict,
    InvalidInput,
    InvalidState,
    Line,
    Movement,
    OutOfStock,
    Overloaded,
    PolicyChanged,
    Product,
    ProductNotFound,
    Reservation,
    ReservationExpired,
    ReservationNotFound,
    ReserveOutcome,
    Shortfall,
    Status,
    StockChanged,
    StockguardError,
    StockLevel,
    StoreUnavailable,
    UnknownLocation,
    UnknownSku,
    Variant,
    VariantSpec,
)
from stockguard.engine import Engine
from stockguard.stores.sql.audit import AuditReport

__all__ = [  # sorted: everything a caller builds, receives or may catch
    "AdmissionLimits",
    "Allocation",
    "AuditReport",
    "BelowReserved",
    "CustomerLimit",
    "DuplicateLocation",
    "DuplicateSku",
    "Engine",
    "IdempotencyConflict",
    "InvalidInput",
    "InvalidState",
    "Line",
    "Movement",
    "OutOfStock",
    "Overloaded",
    "PolicyChanged",
    "Product",
    "ProductNotFound",
    "Reservation",
    "ReservationExpired",
    "ReservationNotFound",
    "ReserveOutcome",
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
]
__version__ = "0.1.0"
