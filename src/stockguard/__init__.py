"""stockguard: inventory reservations that never oversell, fast on a hot SKU.

Quick start::

    from stockguard import Engine

    async with await Engine.open("sqlite:///./shop.db") as engine:
        await engine.set_on_hand("TEE-S-RED", 10)
        hold = await engine.reserve("order-1", [("TEE-S-RED", 2)], ttl_s=900)
        await engine.confirm(hold.reservation.id)
"""

from stockguard.domain import (
    Line,
    Product,
    Reservation,
    ReserveOutcome,
    Status,
    StockguardError,
    StockLevel,
)
from stockguard.engine import Engine

__all__ = [
    "Engine",
    "Line",
    "Product",
    "Reservation",
    "ReserveOutcome",
    "Status",
    "StockLevel",
    "StockguardError",
]
__version__ = "0.1.0"
