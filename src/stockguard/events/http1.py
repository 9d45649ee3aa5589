"""A cheap HTTP/1.1 keep-alive client connection: the relay's webhook POSTs and the load
test's requests (``loadtest/http1.py``) share it.

Why not httpx on these paths: an endpoint gets one POST at a time, in id order
(docs/events.md#webhooks), so its throughput is one over (the client's CPU per POST plus
the round trip), and httpx spent ~2 ms of CPU per POST in the relay (two socket writes,
an anyio stream, a pool, a per-request import probe; profile in
docs/benchmarks.md#stock-events-delivery-latency). Here a request is one pre-built
``bytes`` written in one call, and an ``asyncio.Protocol`` parses the answer's framing in
place: the status line, ``Content-Length``, chunked, or a body that runs to the end of the
connection; no body for 1xx (skipped), 204 and 304; ``Connection: close`` and HTTP/1.0
without ``keep-alive`` close the connection after the answer. Bodies above ``BODY_MAX``
are not kept (the status is still returned, and the connection is closed).

A request that fails on a connection kept alive from an earlier one, before any byte of
its answer arrived, is sent once more on a new connection: the server had most likely
closed the idle connection (a keep-alive timeout) as the request left. If it had in fact
taken the request, that is one duplicate, which at-least-once delivery allows.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

BODY_MAX = 1 << 20
"""Bytes of an answer's body kept; past it the answer ends at its head (and its
connection is closed rather than read to the end)."""
HEAD_MAX = 64 << 10
"""An answer whose head (status line and headers) is longer is a protocol error."""


class ProtocolError(ConnectionError):
    """The answer was not HTTP/1.x, or its framing was broken."""


class _Answer(asyncio.Protocol):
    """One connection's reading side: at most one request in flight (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False
        self.closing = False
        """The server said this connection ends after the answer: do not reuse it."""
        self.answered = False
        """Some byte of an answer to the request in flight arrived."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._parse()  # a body that runs to the end of the connection ends here
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(str(exc or "connection closed")))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.answered = True
        self._parse()

    def eof_received(self) -> bool | None:
        return None  # close our side too: connection_lost follows

    def _parse(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            answer = self._answer()
        except (ValueError, ProtocolError) as broken:
            self.closing = True
            waiter.set_exception(ProtocolError(f"bad HTTP answer: {broken}"))
            return
        if answer is not None:
            waiter.set_result(answer)

    def _answer(self) -> tuple[int, bytes] | None:
        """The next complete final answer, taken off the buffer; None: not complete yet."""
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self.buffer) > HEAD_MAX:
                    raise ProtocolError("answer head too long")
                return None
            status_line, *lines = bytes(self.buffer[:head_end]).split(b"\r\n")
            if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
                raise ProtocolError(repr(status_line[:40]))
            status = int(status_line[9:12])
            start = head_end + 4
            if 100 <= status < 200:  # interim (100 Continue, 103 Early Hints): read on
                del self.buffer[:start]
                continue
            break
        fields: dict[bytes, bytes] = {}
        for line in lines:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        connection = fields.get(b"connection", b"")
        if b"close" in connection or (
            status_line.startswith(b"HTTP/1.0") and b"keep-alive" not in connection
        ):
            self.closing = True
        if status in (204, 304):
            end = start
        elif b"chunked" in fields.get(b"transfer-encoding", b""):
            parsed = _dechunk(self.buffer, start)
            if parsed is None:
                return self._too_long(status, start)
            body, end = parsed
            del self.buffer[:end]
            return status, body
        elif b"content-length" in fields:
            length = int(fields[b"content-length"])
            if length < 0:
                raise ProtocolError("negative content-length")
            if length > BODY_MAX:
                return self._too_long(status, start, force=True)
            end = start + length
            if len(self.buffer) < end:
                return None
        else:  # no framing: the body runs to the end of the connection
            self.closing = True
            if not self.lost:
                return self._too_long(status, start)
            end = len(self.buffer)
        body = bytes(self.buffer[start:end])
        del self.buffer[:end]
        return status, body

    def _too_long(self, status: int, start: int, force: bool = False) -> tuple[int, bytes] | None:
        """A body past ``BODY_MAX`` is not waited for: the status, and no reuse."""
        if force or len(self.buffer) - start > BODY_MAX:
            self.closing = True
            self.buffer.clear()
            return status, b""
        return None


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """(body, end) of a complete chunked body starting at ``start``; None: not complete."""
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:  # trailer fields, then an empty line
            trailer_end = buffer.find(b"\r\n\r\n", at - 2)
            return (bytes(body), trailer_end + 4) if trailer_end >= 0 else None
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


class Http1Connection:
    """A keep-alive connection to one host: opened on first use, opened again after an
    error, a timeout or a ``Connection: close``. One request at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.timeout_s, self.tls = host, port, timeout_s, tls
        self.protocol: _Answer | None = None
        self.loop = asyncio.get_running_loop()

    async def connect(self) -> None:
        _, protocol = await self.loop.create_connection(
            _Answer,
            self.host,
            self.port,
            ssl=self.tls,
            server_hostname=self.host if self.tls is not None else None,
        )
        self.protocol = protocol

    async def send(self, request: object) -> tuple[int, bytes]:
        """Writes ``request`` (the whole request, bytes) and returns (status, body) of its
        answer; raises ``ConnectionError`` or ``TimeoutError`` when there is none."""
        assert isinstance(request, bytes)
        for _ in range(2):
            protocol = self.protocol
            reused = protocol is not None and not (protocol.lost or protocol.closing)
            if not reused:
                self.close()
                await asyncio.wait_for(self.connect(), self.timeout_s)
            protocol = self.protocol
            assert protocol is not None
            assert protocol.transport is not None
            waiter: asyncio.Future[tuple[int, bytes]] = self.loop.create_future()
            protocol.waiter, protocol.answered = waiter, False
            protocol.transport.write(request)
            timer = self.loop.call_later(self.timeout_s, _time_out, waiter, self.timeout_s)
            try:
                return await waiter
            except ConnectionError:
                self.close()
                if (
                    reused
                    and not protocol.answered
                    and not isinstance(waiter.exception(), ProtocolError)
                ):
                    continue  # the server had closed the idle connection: once more
                raise
            except BaseException:
                self.close()
                raise
            finally:
                timer.cancel()
                protocol.waiter = None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


def _time_out(waiter: asyncio.Future[tuple[int, bytes]], timeout_s: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"no answer within {timeout_s:g} s"))
