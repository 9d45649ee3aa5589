"""The hot routes answered without the framework's per-request machinery.

A flash sale is thousands of identical, well-formed requests a second on five routes:
reserve, read a reservation, confirm, release, read one SKU's stock (and the liveness
probe a load balancer polls). Through FastAPI each of those paid ~700 µs of CPU in
routing, dependency solving, validation and re-validation of the response, against ~20 µs
in the engine (see docs/benchmarks.md, "HTTP path"). ``LeanRoutes`` answers exactly those
requests itself: a match on method and path, msgspec to decode the body against the same
limits the OpenAPI models declare, the engine, and msgspec to encode the answer.

It only ever answers what the FastAPI app would answer the same way. Anything it is not
sure of goes to the app untouched (``RequestEdge`` replays the body): a query string, a
missing or unknown token, a path value or body the strict decoder refuses, a content
type other than JSON.
So every 401, 422 and framework error keeps its one source, the FastAPI app, and the
OpenAPI document still describes these routes (they stay declared there). Errors the
engine raises are rendered by the same problem table as the app's handlers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from starlette.types import Message, Scope, Send

from stockguard import domain
from stockguard.engine import Engine
from stockguard.service import errors
from stockguard.service.auth import Tokens
from stockguard.service.models import breakdown

logger = logging.getLogger("stockguard.service")

_TEXT = f"^[^{domain.TEXT_FORBIDDEN}]+\\Z"
"""models.NO_CONTROL_CHARS in Python's ``re`` dialect: ``$`` would also match before a
final newline, which the schema's (and pydantic's) end anchor does not."""
_NO_CONTROL_CHARS = re.compile(f"[{domain.TEXT_FORBIDDEN}]")
DEFAULT_LOCATION = domain.DEFAULT_LOCATION_CODE


def _text(length_max: int) -> msgspec.Meta:
    return msgspec.Meta(min_length=1, max_length=length_max, pattern=_TEXT)


class _ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    sku: Annotated[str, _text(domain.SKU_LEN_MAX)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=domain.QUANTITY_MAX)]
    location: Annotated[str, _text(domain.SKU_LEN_MAX)] | None = None


class _ReserveIn(msgspec.Struct, forbid_unknown_fields=True):
    """models.ReserveIn's limits; a body this refuses goes to FastAPI for its 422."""

    order_id: Annotated[str, _text(domain.ORDER_ID_LEN_MAX)]
    items: Annotated[list[_ItemIn], msgspec.Meta(min_length=1, max_length=domain.LINES_MAX)]
    ttl_seconds: Annotated[int, msgspec.Meta(ge=domain.TTL_S_MIN, le=domain.TTL_S_MAX)] = (
        domain.TTL_S_DEFAULT
    )
    customer_id: Annotated[str, _text(domain.CUSTOMER_ID_LEN_MAX)] | None = None
    allocation_policy: Literal["priority", "most_available"] | None = None
    split: bool = True


_decode_reserve = msgspec.json.Decoder(_ReserveIn).decode
_encode = msgspec.json.Encoder().encode

JSON_HEADERS = [(b"content-type", b"application/json")]
PROBLEM_HEADERS = [(b"content-type", errors.PROBLEM_MEDIA_TYPE.encode())]
HEALTHY = b'{"status":"ok"}'


_second: list[Any] = [None, ""]
"""The last second formatted, and its text: a flash sale's answers share a few seconds."""


def rfc3339_ms(epoch_ms: int) -> str:
    """``models.Timestamp``'s form (``2026-11-30T09:55:57.109Z``) without a datetime."""
    seconds, millis = divmod(epoch_ms, 1000)
    if _second[0] != seconds:
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second[0] = seconds
    return f"{_second[1]}.{millis:03d}Z"


def reservation_json(reservation: domain.Reservation) -> bytes:
    """``models.ReservationOut`` as FastAPI renders it, field for field."""
    return _encode(
        {
            "id": reservation.id,
            "order_id": reservation.order_id,
            "customer_id": reservation.customer_id,
            "status": reservation.status.value,
            "items": [
                {
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "backordered": line.backordered,
                    "allocations": [
                        {
                            "location": a.location,
                            "quantity": a.quantity,
                            "backordered": a.backordered,
                        }
                        for a in line.allocations
                    ]
                    if line.allocations
                    else [
                        {
                            "location": DEFAULT_LOCATION,
                            "quantity": line.quantity,
                            "backordered": line.backordered,
                        }
                    ],
                }
                for line in reservation.lines
            ],
            "expires_at": rfc3339_ms(reservation.expires_at_ms),
            "created_at": rfc3339_ms(reservation.created_at_ms),
        }
    )


def stock_json(level: domain.StockLevel) -> bytes:
    """``models.StockOut`` as FastAPI renders it."""
    return _encode(
        {
            "sku": level.sku,
            "on_hand": level.on_hand,
            "reserved": level.reserved,
            "available": level.available,
            "version": level.version,
            "locations": [
                {
                    "location": at.location,
                    "on_hand": at.on_hand,
                    "reserved": at.reserved,
                    "available": at.available,
                    "version": at.version,
                    "safety_stock": at.safety_stock,
                    "backorder_max": at.backorder_max,
                }
                for at in breakdown(level)
            ],
        }
    )


class _NotMine(Exception):
    """The request is the FastAPI app's to answer."""


Answer = tuple[int, bytes, str]
"""Status, JSON body, and the order_id the request concerned (for the log line)."""
Handler = Callable[[Engine, str, bytes], Awaitable[Answer]]


async def _reserve(engine: Engine, _param: str, body: bytes) -> Answer:
    try:
        given = _decode_reserve(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise _NotMine from None
    items = given.items
    lines: list[tuple[str, int]] | list[domain.Line] = [(item.sku, item.quantity) for item in items]
    if any(item.location is not None for item in items):
        lines = [domain.Line(item.sku, item.quantity, 0, item.location) for item in items]
    outcome = await engine.reserve(
        given.order_id,
        lines,
        given.ttl_seconds,
        given.customer_id,
        given.allocation_policy,
        given.split,
    )
    held = outcome.reservation
    return (201 if outcome.created else 200), reservation_json(held), held.order_id


async def _get_reservation(engine: Engine, reservation_id: str, _body: bytes) -> Answer:
    found = await engine.get_reservation(reservation_id)
    return 200, reservation_json(found), found.order_id


async def _confirm(engine: Engine, reservation_id: str, _body: bytes) -> Answer:
    confirmed = await engine.confirm(reservation_id)
    return 200, reservation_json(confirmed), confirmed.order_id


async def _release(engine: Engine, reservation_id: str, _body: bytes) -> Answer:
    released = await engine.release(reservation_id)
    return 200, reservation_json(released), released.order_id


async def _stock_of(engine: Engine, sku: str, _body: bytes) -> Answer:
    return 200, stock_json(await engine.stock_of(sku)), ""


RESERVATIONS = "/v1/reservations"
RESERVATION_PREFIX = "/v1/reservations/"
STOCK_PREFIX = "/v1/stock/"


def _path_value(value: str, length_max: int = domain.ID_LEN_MAX) -> str:
    """A ``{param}`` segment FastAPI would accept, else not ours (FastAPI writes the 422)."""
    if not 0 < len(value) <= length_max or "/" in value or _NO_CONTROL_CHARS.search(value):
        raise _NotMine
    return value


def match(method: str, path: str) -> tuple[Handler, str, str, bool]:
    """(handler, route template, path value, needs the API token) for a hot route."""
    if method == "POST":
        if path == RESERVATIONS:
            return _reserve, RESERVATIONS, "", True
        if path.startswith(RESERVATION_PREFIX):
            if path.endswith("/confirm"):
                found = _path_value(
                    path[len(RESERVATION_PREFIX) : -len("/confirm")], domain.ID_LEN_MAX
                )
                return _confirm, RESERVATION_PREFIX + "{reservation_id}/confirm", found, True
            if path.endswith("/release"):
                found = _path_value(
                    path[len(RESERVATION_PREFIX) : -len("/release")], domain.ID_LEN_MAX
                )
                return _release, RESERVATION_PREFIX + "{reservation_id}/release", found, True
    elif method == "GET":
        if path.startswith(RESERVATION_PREFIX):
            found = _path_value(path[len(RESERVATION_PREFIX) :])
            return _get_reservation, RESERVATION_PREFIX + "{reservation_id}", found, True
        if path.startswith(STOCK_PREFIX):
            found = _path_value(path[len(STOCK_PREFIX) :], domain.SKU_LEN_MAX)
            return _stock_of, STOCK_PREFIX + "{sku}", found, True
    raise _NotMine


class LeanRoutes:
    """The hot routes, asked first by ``middleware.RequestEdge`` once it has the body.

    ``engine_of`` is called per request: the engine exists only once the lifespan has
    opened it.
    """

    def __init__(self, engine_of: Callable[[], Engine], tokens: Tokens) -> None:
        self.engine_of = engine_of
        self.tokens = tokens

    async def answer(self, scope: Scope, body: list[Message], send: Send) -> int:
        """The status sent, or 0 when the request is the app's (nothing was sent)."""
        if scope.get("query_string"):
            return 0
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/healthz" and method == "GET":
            scope["stockguard.route"] = path
            await _send(send, 200, JSON_HEADERS, HEALTHY)
            return 200
        try:
            handler, template, param, guarded = match(method, path)
            if guarded and self.tokens.api is not None:
                self._check_token(scope)
            payload_in = _json_body(scope, body) if handler is _reserve else b""
            if handler is _release and any(message.get("body") for message in body):
                raise _NotMine  # a partial release (items in the body): FastAPI's route
            status, payload, order_id = await handler(self.engine_of(), param, payload_in)
        except _NotMine:
            return 0
        except domain.StockguardError as error:
            scope["stockguard.route"] = template
            status, headers, payload = errors.domain_problem_parts(error)
            del error  # no frame -> traceback -> frame cycle per refusal (see engine.reserve)
            await _send(send, status, headers, payload)
            return status
        except errors.BACKEND_FAILURES as failure:
            scope["stockguard.route"] = template
            status, headers, payload = errors.domain_problem_parts(errors.backend_failure(failure))
            await _send(send, status, headers, payload)
            return status
        except Exception:
            scope["stockguard.route"] = template
            logger.exception("unexpected error")
            status, payload = errors.problem_bytes(
                "internal-error", "an unexpected error occurred; it has been logged"
            )
            await _send(send, status, PROBLEM_HEADERS, payload)
            return status
        scope["stockguard.route"] = template
        if order_id:
            state: dict[str, Any] = scope.setdefault("state", {})
            state["order_id"] = order_id
        await _send(send, status, JSON_HEADERS, payload)
        return status

    def _check_token(self, scope: Scope) -> None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and given:
                    is_admin, is_api = self.tokens.roles_of(given)
                    if is_admin or is_api:
                        return
                break
        raise _NotMine


def _json_body(scope: Scope, body: list[Message]) -> bytes:
    """The complete body when FastAPI would decode it as JSON, else not ours."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            if value.split(b";", 1)[0].strip().lower() != b"application/json":
                break
            if len(body) == 1:
                only: bytes = body[0].get("body", b"")
                return only
            if body and all(message["type"] == "http.request" for message in body):
                return b"".join(message.get("body", b"") for message in body)
            break
    raise _NotMine


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
