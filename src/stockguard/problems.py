"""Every kind of problem a face can answer, with its HTTP status and title: ONE table.

The HTTP API (``service/errors.py``, RFC 9457 problem documents) and the admin page
(``admin/``) both answer from it, so a domain error has the same status everywhere. The
kinds are the domain errors' stable ``kind`` (docs/design.md#errors), plus the few only
HTTP has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stockguard import domain


@dataclass(frozen=True, slots=True)
class ProblemKind:
    status: int
    title: str


PROBLEMS: Mapping[str, ProblemKind] = {
    # domain errors (stockguard.domain), by their ``kind``
    domain.InvalidInput.kind: ProblemKind(422, "Invalid input"),
    domain.UnknownSku.kind: ProblemKind(404, "Unknown SKU"),
    domain.DuplicateSku.kind: ProblemKind(409, "SKU already exists"),
    domain.UnknownLocation.kind: ProblemKind(404, "Unknown location"),
    domain.DuplicateLocation.kind: ProblemKind(409, "Location already exists"),
    domain.ProductNotFound.kind: ProblemKind(404, "Product not found"),
    domain.ReservationNotFound.kind: ProblemKind(404, "Reservation not found"),
    domain.OutOfStock.kind: ProblemKind(409, "Out of stock"),
    domain.IdempotencyConflict.kind: ProblemKind(409, "Order reserved with other items"),
    domain.InvalidState.kind: ProblemKind(409, "Reservation already ended"),
    domain.ReservationExpired.kind: ProblemKind(410, "Reservation expired"),
    domain.StockChanged.kind: ProblemKind(409, "Stock changed meanwhile"),
    domain.BelowReserved.kind: ProblemKind(409, "On hand below reserved"),
    domain.CustomerLimit.kind: ProblemKind(409, "Customer limit reached"),
    domain.PolicyChanged.kind: ProblemKind(409, "Stock policy changed meanwhile"),
    domain.Overloaded.kind: ProblemKind(429, "Too many requests"),
    domain.StoreUnavailable.kind: ProblemKind(503, "Store unavailable"),
    # stockguard.events.errors
    "webhook-not-found": ProblemKind(404, "Webhook endpoint or dead letter not found"),
    # errors only the HTTP layer has
    "unauthorized": ProblemKind(401, "Missing or unknown bearer token"),
    "forbidden": ProblemKind(403, "Token not allowed here"),
    "not-found": ProblemKind(404, "No such resource"),
    "method-not-allowed": ProblemKind(405, "Method not allowed"),
    "request-timeout": ProblemKind(408, "Request body too slow"),
    "body-too-large": ProblemKind(413, "Request body too large"),
    "internal-error": ProblemKind(500, "Internal error"),
}


def status_of(error: domain.StockguardError) -> int:
    """The HTTP status of a domain error (500 for a kind the table lacks: a bug)."""
    known = PROBLEMS.get(error.kind)
    return 500 if known is None else known.status


def retry_after_s(error: domain.StockguardError) -> int | None:
    """Seconds a client should wait before retrying, for the kinds that are temporary."""
    if isinstance(error, domain.Overloaded | domain.StoreUnavailable):
        return max(1, error.retry_after_s)
    return None
