"""The load client's HTTP: one keep-alive HTTP/1.1 connection per virtual user.

Two interchangeable engines send the same requests, built before they are needed:

- ``raw`` (the default): an ``asyncio.Protocol`` writes pre-built request bytes and parses
  the status line, ``Content-Length`` (or chunked) body and ``Connection: close`` itself;
  on uvloop it is several times cheaper per request than httpx (figures in
  ``docs/loadtest.md#the-client``);
- ``httpx``: one ``httpx.AsyncClient`` per process with a connection per virtual user, for
  comparison (``--client httpx``).

A request that gets no answer (refused, reset, timed out) reports status 0 and the
connection is opened again for the next one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Protocol, cast
from urllib.parse import quote

import httpx

_ID = re.compile(rb'"id"\s*:\s*"([^"]+)"')


def reservation_id(body: bytes) -> str | None:
    """The ``id`` of a reservation answer (the first ``"id"`` member of its JSON)."""
    found = _ID.search(body)
    return found.group(1).decode() if found else None


class Connection(Protocol):
    async def send(self, request: object) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


class Requests(Protocol):
    """Builds an engine's requests; what it returns is only ever given to ``send``."""

    def reserve(
        self, order_id: str, lines: Sequence[tuple[str, int]], ttl_s: int | None
    ) -> object: ...

    def transition(self, reservation_id: str, action: str) -> object: ...

    def stock(self, sku: str) -> object: ...

    def get(self, path: str) -> object: ...


def reserve_body(order_id: str, lines: Sequence[tuple[str, int]], ttl_s: int | None) -> bytes:
    items = ",".join(f'{{"sku":"{sku}","quantity":{quantity}}}' for sku, quantity in lines)
    ttl = f',"ttl_seconds":{ttl_s}' if ttl_s is not None else ""
    return f'{{"order_id":"{order_id}","items":[{items}]{ttl}}}'.encode()


# ---------------------------------------------------------------------------- raw


class RawRequests:
    """Request bytes with the fixed head written once (host, token, content type)."""

    def __init__(self, host: str, token: str | None, *, bare: bool = False) -> None:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._tail = f"Host: {host}\r\n{auth}".encode()
        self._post_json = b"POST /v1/reservations HTTP/1.1\r\n" + self._tail
        self._post_json += b"Content-Type: application/json\r\nContent-Length: "
        # The echo of ``--calibrate`` parses every POST body as JSON: give it one.
        self._empty = (
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            if bare
            else (b"Content-Length: 0\r\n\r\n")
        )

    def reserve(self, order_id: str, lines: Sequence[tuple[str, int]], ttl_s: int | None) -> bytes:
        body = reserve_body(order_id, lines, ttl_s)
        return self._post_json + str(len(body)).encode() + b"\r\n\r\n" + body

    def transition(self, reservation_id: str, action: str) -> bytes:
        path = f"/v1/reservations/{quote(reservation_id, safe='')}/{action}".encode()
        return b"POST " + path + b" HTTP/1.1\r\n" + self._tail + self._empty

    def stock(self, sku: str) -> bytes:
        return self.get(f"/v1/stock/{quote(sku, safe='')}")

    def get(self, path: str) -> bytes:
        return b"GET " + path.encode() + b" HTTP/1.1\r\n" + self._tail + b"\r\n"


class _Http1(asyncio.Protocol):
    """One connection; one request at a time (no pipelining), answers parsed in place."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(str(exc or "connection closed")))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).lower()
        start = head_end + 4
        length_at = head.find(b"\r\ncontent-length:")
        if length_at >= 0:
            line_end = head.find(b"\r\n", length_at + 2)
            value = head[length_at + 17 : line_end if line_end >= 0 else len(head)]
            end = start + int(value)
            if len(self.buffer) < end:
                return
            body = bytes(self.buffer[start:end])
        elif b"transfer-encoding: chunked" in head:
            parsed = _dechunk(self.buffer, start)
            if parsed is None:
                return
            body, end = parsed
        else:  # no framing: the body runs to the end of the connection
            if not self.lost:
                return
            end = len(self.buffer)
            body = bytes(self.buffer[start:end])
        status = int(head[9:12])
        if b"\r\nconnection: close" in head:
            self.closing = True
        del self.buffer[:end]
        self.waiter.set_result((status, body))


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    body = bytearray()
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", at)
            return (bytes(body), trailer_end + 2) if trailer_end >= 0 else None
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


class RawConnection:
    """A keep-alive connection that reconnects after an error or ``Connection: close``."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.protocol: _Http1 | None = None
        self.loop = asyncio.get_running_loop()

    async def connect(self) -> None:
        _, protocol = await self.loop.create_connection(_Http1, self.host, self.port)
        self.protocol = protocol

    async def send(self, request: object) -> tuple[int, bytes]:
        assert isinstance(request, bytes)
        protocol = self.protocol
        if protocol is None or protocol.lost or protocol.closing:
            self.close()
            await asyncio.wait_for(self.connect(), self.timeout_s)
            protocol = self.protocol
            assert protocol is not None
        waiter: asyncio.Future[tuple[int, bytes]] = self.loop.create_future()
        protocol.waiter = waiter
        assert protocol.transport is not None
        protocol.transport.write(request)
        timer = self.loop.call_later(self.timeout_s, _time_out, waiter)
        try:
            return await waiter
        except BaseException:
            self.close()
            raise
        finally:
            timer.cancel()

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


def _time_out(waiter: asyncio.Future[tuple[int, bytes]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer in time"))


# ---------------------------------------------------------------------------- httpx


class HttpxRequests:
    """``httpx.Request`` objects built ahead of sending, on the process's one client."""

    def __init__(self, client: httpx.AsyncClient, token: str | None, *, bare: bool = False) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.bare = bare

    def reserve(
        self, order_id: str, lines: Sequence[tuple[str, int]], ttl_s: int | None
    ) -> httpx.Request:
        return self.client.build_request(
            "POST",
            "/v1/reservations",
            content=reserve_body(order_id, lines, ttl_s),
            headers={**self.headers, "Content-Type": "application/json"},
        )

    def transition(self, reservation_id: str, action: str) -> httpx.Request:
        path = f"/v1/reservations/{quote(reservation_id, safe='')}/{action}"
        if self.bare:
            return self.client.build_request("POST", path, json={}, headers=self.headers)
        return self.client.build_request("POST", path, headers=self.headers)

    def stock(self, sku: str) -> httpx.Request:
        return self.get(f"/v1/stock/{quote(sku, safe='')}")

    def get(self, path: str) -> httpx.Request:
        return self.client.build_request("GET", path, headers=self.headers)


class HttpxConnection:
    """A virtual user's share of the process's httpx client (its pool keeps one
    connection per user alive)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, request: object) -> tuple[int, bytes]:
        assert isinstance(request, httpx.Request)
        try:
            answer = await self.client.send(request)
        except httpx.TimeoutException as late:
            raise TimeoutError(str(late)) from late
        except httpx.TransportError as cut:
            raise ConnectionError(str(cut)) from cut
        return answer.status_code, answer.content

    def close(self) -> None:
        pass


def httpx_client(base_url: str, connections: int, timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout_s,
        limits=httpx.Limits(
            max_connections=max(1, connections), max_keepalive_connections=max(1, connections)
        ),
    )
