"""Queue requests and their answers as they travel through Redis. Pure, no I/O.

A request is a stream entry of flat strings; an answer is one JSON document naming the
request it answers and carrying either the reservation or the typed error, so that the
waiting process raises exactly the error a direct call would have raised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stockguard import domain
from stockguard.domain import Line, Reservation, ReserveOutcome, ReserveRequest, Status
from stockguard.stores.redis.codec import decode_lines, encode_lines

Result = ReserveOutcome | domain.StockguardError


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    request_id: str
    inbox: str
    request: ReserveRequest


def request_fields(request_id: str, inbox: str, request: ReserveRequest) -> list[str]:
    """The stream entry's field, value pairs."""
    return [
        "rid", request_id,
        "inbox", inbox,
        "order_id", request.order_id,
        "customer_id", request.customer_id or "",
        "ttl_s", str(request.ttl_s),
        "lines", encode_lines(request.lines),
        # Where located SKUs draw from (docs/locations.md): absent, the defaults.
        "where", _where(request),
    ]  # fmt: skip


def _where(request: ReserveRequest) -> str:
    """The request's location options as JSON, or "" for none (the usual case)."""
    pins = {line.sku: line.location for line in request.lines if line.location is not None}
    if request.allocation_policy is None and request.split and not pins:
        return ""
    return json.dumps([request.allocation_policy, request.split, pins], separators=(",", ":"))


def parse_request(fields: Mapping[str, str]) -> QueuedRequest:
    """Raises ValueError/KeyError/InvalidInput on an entry that is not a valid request."""
    lines = decode_lines(fields["lines"])
    policy, split, pins = json.loads(fields["where"]) if fields.get("where") else (None, True, {})
    if pins:
        lines = tuple(Line(line.sku, line.quantity, 0, pins.get(line.sku)) for line in lines)
    request = domain.validate_reserve(
        fields["order_id"],
        lines,
        int(fields["ttl_s"]),
        fields["customer_id"] or None,
        policy,
        split,
    )
    return QueuedRequest(fields["rid"], fields["inbox"], request)


def encode_answer(request_id: str, entry_id: str, result: Result) -> str:
    body: dict[str, Any] = {"rid": request_id, "entry": entry_id}
    if isinstance(result, ReserveOutcome):
        r = result.reservation
        body["held"] = {
            "id": r.id,
            "order_id": r.order_id,
            "customer_id": r.customer_id,
            "status": r.status.value,
            "lines": [
                [line.sku, line.quantity, line.backordered]
                + [[a.location, a.quantity, a.backordered] for a in line.allocations]
                for line in r.lines
            ],
            "expires_at_ms": r.expires_at_ms,
            "created_at_ms": r.created_at_ms,
            "created": result.created,
        }
    else:
        body["error"] = result.kind
        body["detail"] = str(result)
        if isinstance(result, domain.OutOfStock):
            body["shortfalls"] = [[s.sku, s.requested, s.available] for s in result.shortfalls]
        elif isinstance(result, domain.UnknownSku):
            body["skus"] = list(result.skus)
        elif isinstance(result, domain.IdempotencyConflict):
            body["order_id"] = result.order_id
            body["reservation_id"] = result.reservation_id
        elif isinstance(result, domain.CustomerLimit):
            body["limit"] = [
                result.sku,
                result.customer_id,
                result.limit,
                result.units,
                result.requested,
            ]
        elif isinstance(result, domain.InvalidInput):
            body["field"] = [result.field, result.reason]
        elif isinstance(result, domain.StoreUnavailable | domain.Overloaded):
            body["retry_after_s"] = result.retry_after_s
    return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Answer:
    request_id: str
    entry_id: str
    """The request's stream entry: its order in the partition (FIFO evidence in tests)."""
    result: Result


def decode_answer(text: str) -> Answer:
    body = json.loads(text)
    return Answer(str(body["rid"]), str(body["entry"]), _result(body))


def _result(body: Mapping[str, Any]) -> Result:
    held = body.get("held")
    if held is not None:
        reservation = Reservation(
            id=held["id"],
            order_id=held["order_id"],
            customer_id=held["customer_id"],
            status=Status(held["status"]),
            lines=tuple(
                Line(
                    sku,
                    int(q),
                    int(b),
                    allocations=tuple(domain.Allocation(c, int(n), int(d)) for c, n, d in drawn),
                )
                for sku, q, b, *drawn in held["lines"]
            ),
            expires_at_ms=int(held["expires_at_ms"]),
            created_at_ms=int(held["created_at_ms"]),
        )
        return ReserveOutcome(reservation, created=bool(held["created"]))
    kind = body["error"]
    if kind == domain.OutOfStock.kind:
        return domain.OutOfStock(
            [domain.Shortfall(s, int(r), int(a)) for s, r, a in body["shortfalls"]]
        )
    if kind == domain.UnknownSku.kind:
        return domain.UnknownSku(body["skus"])
    if kind == domain.IdempotencyConflict.kind:
        return domain.IdempotencyConflict(body["order_id"], body["reservation_id"])
    if kind == domain.CustomerLimit.kind:
        sku, customer_id, limit, units, requested = body["limit"]
        return domain.CustomerLimit(sku, customer_id, int(limit), int(units), int(requested))
    if kind == domain.InvalidInput.kind:
        field_name, reason = body["field"]
        return domain.InvalidInput(field_name, reason)
    if kind == domain.Overloaded.kind:
        return domain.Overloaded(body["detail"], int(body.get("retry_after_s", 1)))
    return domain.StoreUnavailable(f"{kind}: {body['detail']}", int(body.get("retry_after_s", 1)))
