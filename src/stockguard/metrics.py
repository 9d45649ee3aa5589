"""Prometheus metrics the engine and strategies count (exported by the service)."""

from __future__ import annotations

from prometheus_client import Counter

RESERVATIONS = Counter(
    "stockguard_reservations_total",
    "Reservation requests by outcome (held, replayed, out-of-stock, idempotency-conflict…)",
    ["outcome"],
)
TRANSITIONS = Counter(
    "stockguard_reservation_transitions_total",
    "Confirm and release calls by the status the reservation ended in",
    ["status"],
)
EXPIRED = Counter("stockguard_reservations_expired_total", "Reservations ended by expiry sweeps")
