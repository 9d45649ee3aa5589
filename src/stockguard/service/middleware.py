"""The edge every request passes: body limit, deadline, metrics and one log line.

A plain ASGI middleware (no per-request task, no response buffering): it reads the body
up to ``BODY_BYTES_MAX`` before the app runs (413 past it, whether announced by
``Content-Length`` or streamed), gives the app ``REQUEST_S_MAX`` to answer (503 after,
so no request hangs on a backend that stopped answering), and then records the request:
in-flight gauge, count and latency by route template and status, and (with the access
log on) one log line with method, path, status, duration_ms, the order_id when the route
named one, and the request id.

The request id is the caller's ``X-Request-ID`` when it is well formed (at most
``logs.REQUEST_ID_LEN_MAX`` characters of ``[A-Za-z0-9._:=+/-]``; anything else is
ignored), else one made here only when the access log is on. The answer carries it back
in ``X-Request-ID``, and every log line written while the request runs names it. A request
with no id and the access log off pays one header comparison and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from typing import Any, Protocol

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockguard import metrics
from stockguard.service import logs
from stockguard.service.errors import PROBLEM_MEDIA_TYPE, problem_bytes

BODY_BYTES_MAX = 1_000_000
"""docs/design.md#limits: request bodies ≤ 1 MB."""
BODY_READ_S_MAX = 10.0
"""A client has this long to send its whole body (408 after): a slow or stalled upload
must not hold a connection and its buffers for ever. The request head is bounded by
the server (``server.HEADER_READ_S_MAX``)."""
REQUEST_S_MAX = 30.0
"""Backstop deadline; the store's own timeouts (connect 5 s, pool and locks 10 s) fire
first, this catches whatever would still wait."""

request_log = logging.getLogger("stockguard.http")


BODY_DRAIN_BYTES_MAX = 4 * BODY_BYTES_MAX
"""A body over the limit but under this is read to its end (and dropped) before the 413:
a proxy still sending it would otherwise see the connection reset, lose the answer and
turn it into a 502. A larger one is answered at once and the connection closed."""


class BodyTooLarge(Exception):
    pass


async def _drain(receive: Receive, length: int, length_max: int) -> bool:
    """Reads and drops the rest of a body; False if it ran past ``length_max``."""
    while length <= length_max:
        message = await receive()
        if message["type"] != "http.request":
            return False
        length += len(message.get("body", b""))
        if not message.get("more_body", False):
            return length <= length_max
    return False


async def _read_body(
    receive: Receive, length_max: int, declared: int | None = None
) -> list[Message]:
    """The request's body messages, refusing more than ``length_max`` bytes.

    Once the ``declared`` Content-Length has arrived the body is complete: the server's
    empty closing message is not waited for (one fewer round trip into the server per
    request; a later ``receive`` by the app still gets it)."""
    messages: list[Message] = []
    length = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages  # the client left; let the app see it
        length += len(message.get("body", b""))
        if length > length_max:
            raise BodyTooLarge(length, message.get("more_body", False))
        if not message.get("more_body", False):
            return messages
        if length == declared:
            message["more_body"] = False
            return messages


REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:=+/-]{1,%d}" % logs.REQUEST_ID_LEN_MAX)
"""A request id a caller may give: bounded, and nothing a log line or header must escape."""


def _declared_length_and_request_id(scope: Scope) -> tuple[int | None, bytes | None]:
    """``Content-Length`` and a well-formed ``X-Request-ID``, in one pass over the
    headers (a malformed id is ignored, as if not given)."""
    length: int | None = None
    request_id: bytes | None = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == REQUEST_ID_HEADER and _REQUEST_ID.fullmatch(value):
            request_id = value
    return length, request_id


def _with_request_id(send: Send, request_id: bytes) -> Send:
    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {
                **message,
                "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)],
            }
        await send(message)

    return send_with_id


def route_label(scope: Scope) -> str:
    """The route template a request matched (metrics' and spans' name for it), or
    "unmatched": never the raw path, so random URLs cannot grow the label set."""
    lean: str | None = scope.get("stockguard.route")
    if lean is not None:
        return lean
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class Lean(Protocol):
    """What the edge asks first (``lean.LeanRoutes``): the status it answered, or 0 when
    the request is the app's."""

    async def answer(self, scope: Scope, body: list[Message], send: Send) -> int: ...


class RequestEdge:
    def __init__(
        self,
        app: ASGIApp,
        body_bytes_max: int = BODY_BYTES_MAX,
        request_s_max: float = REQUEST_S_MAX,
        body_read_s_max: float = BODY_READ_S_MAX,
        lean: Lean | None = None,
    ) -> None:
        self.app = app
        self.body_bytes_max = body_bytes_max
        self.request_s_max = request_s_max
        self.body_read_s_max = body_read_s_max
        self.lean = lean

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        status = 500
        declared, request_id = _declared_length_and_request_id(scope)
        if request_id is None and request_log.isEnabledFor(logging.INFO):
            request_id = secrets.token_hex(8).encode()
        context = None
        if request_id is not None:  # only then: no extra call per request otherwise
            send = _with_request_id(send, request_id)
            context = logs.request_id.set(request_id.decode("ascii"))
        metrics.HTTP_IN_FLIGHT.inc()
        try:
            status = await self._answer(scope, receive, send, declared)
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            self._record(scope, status, time.perf_counter() - started_s, request_id)
            if context is not None:
                logs.request_id.reset(context)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, declared: int | None
    ) -> int:
        """The status answered. One timer bounds the body read, then is moved to bound
        the whole answer (a second timer per request costs ~2 % of a flash sale's CPU)."""
        answer: dict[str, Any] = {"status": 500, "started": False}
        reading = True
        deadline = asyncio.timeout(self.body_read_s_max)
        try:
            async with deadline:
                if declared is not None and declared > self.body_bytes_max:
                    raise BodyTooLarge(0, True)
                body = await _read_body(receive, self.body_bytes_max, declared)
                reading = False
                deadline.reschedule(asyncio.get_running_loop().time() + self.request_s_max)
                if self.lean is not None:
                    status = await self.lean.answer(scope, body, send)
                    if status:
                        return status

                async def replay() -> Message:
                    return body.pop(0) if body else await receive()

                async def send_observed(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        answer["status"] = message["status"]
                        answer["started"] = True
                    await send(message)

                await self.app(scope, replay, send_observed)
                return int(answer["status"])
        except BodyTooLarge as too_large:
            length, more = too_large.args
            drained = not more or (
                (declared is None or declared <= BODY_DRAIN_BYTES_MAX)
                and await self._drained(receive, length)
            )
            return await _send_problem(
                send,
                "body-too-large",
                f"bodies are limited to {self.body_bytes_max} bytes",
                close=not drained,
            )
        except TimeoutError:
            if not deadline.expired() or answer["started"]:
                raise
            if reading:
                return await _send_problem(
                    send,
                    "request-timeout",
                    f"the body did not arrive within {self.body_read_s_max} s",
                    close=True,
                )
            return await _send_problem(
                send,
                "store-unavailable",
                f"no answer within {self.request_s_max} s; retry later",
                retry_after_s=1,
            )

    async def _drained(self, receive: Receive, length: int) -> bool:
        try:
            async with asyncio.timeout(self.body_read_s_max):
                return await _drain(receive, length, BODY_DRAIN_BYTES_MAX)
        except TimeoutError:
            return False

    def _record(
        self, scope: Scope, status: int, duration_s: float, request_id: bytes | None
    ) -> None:
        route = route_label(scope)
        method = scope.get("method", "")
        count, latency = metrics.http_answered(route, method, status)
        count.inc()
        latency.observe(duration_s)
        if request_log.isEnabledFor(logging.INFO):
            path = scope.get("path", "")
            fields: dict[str, Any] = {
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(duration_s * 1000, 3),
            }
            state = scope.get("state") or {}
            if "order_id" in state:
                fields["order_id"] = state["order_id"]
            if request_id is not None:
                fields["request_id"] = request_id.decode("ascii")
            request_log.info("%s %s %d", method, path, status, extra={"fields": fields})


async def _send_problem(
    send: Send, kind: str, detail: str, *, retry_after_s: int | None = None, close: bool = False
) -> int:
    status, body = problem_bytes(kind, detail)
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status
