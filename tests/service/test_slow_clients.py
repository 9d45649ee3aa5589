"""Slow and hostile clients against the real ``stockguard serve``: none holds a
connection for ever, and clients that never read their answers stall only themselves.

A socket that never sends its first byte is the proxy's to close (granian's header timer
starts with the first byte): ``test_behind_nginx`` checks the shipped nginx config does.

Each test bounds its own loops by count, and the socket timeouts below are guards that
end a test which would otherwise hang; no test asserts how fast anything happens.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .support import ADMIN_TOKEN, Served, bearer

Serve = Callable[..., AbstractContextManager[Served]]

TIMEOUT_ENV = {
    "STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN,
    "STOCKGUARD_HEADER_READ_S_MAX": "1",
    "STOCKGUARD_BODY_READ_S_MAX": "1",
}
GUARD_S = 60.0
"""A socket read waits at most this long: far beyond the 1 s timeouts served here."""


def connect(served: Served) -> socket.socket:
    where = urlsplit(served.url)
    client = socket.create_connection((where.hostname or "127.0.0.1", where.port or 80))
    client.settimeout(GUARD_S)
    return client


def read_until_closed(client: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := client.recv(65_536):
        received += chunk
    return received


def worker_rss_bytes(served: Served) -> int:
    """Resident memory of serve's worker process (Linux /proc)."""
    pid = served.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for child in children:
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(serve: Serve, tmp_path: Path) -> None:
    """Slowloris: the head never completes; the server closes the connection while the
    client is still trickling (at most 200 bytes over ~40 s are ever sent)."""
    with serve("--db", f"sqlite:///{tmp_path}/loris.db", env=TIMEOUT_ENV) as served:
        with connect(served) as loris:
            loris.sendall(b"GET /healthz HTTP/1.1\r\nHost: stockguard.test\r\n")
            cut_off = False
            for _ in range(200):
                try:
                    loris.sendall(b"X")
                except OSError:  # broken pipe / reset: the server closed it
                    cut_off = True
                    break
                time.sleep(0.2)
            if not cut_off:
                loris.settimeout(0.5)
                try:
                    cut_off = loris.recv(65_536) == b""
                except TimeoutError:
                    cut_off = False
        assert cut_off, "the server kept a never-ending request head open"


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(
    serve: Serve, tmp_path: Path
) -> None:
    with serve("--db", f"sqlite:///{tmp_path}/body.db", env=TIMEOUT_ENV) as served:
        with connect(served) as slow:
            slow.sendall(
                b"POST /v1/reservations HTTP/1.1\r\nHost: stockguard.test\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                b'{"order_id"'
            )
            received = read_until_closed(slow)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), received
        assert b"application/problem+json" in head
        assert b"/problems/request-timeout" in body
        assert served.stop() == 0


async def test_clients_pipelining_without_reading_stall_only_themselves(
    serve: Serve, tmp_path: Path
) -> None:
    """100 connections each pipeline 2,000 requests and never read an answer. Meanwhile
    another client's 100 requests are all answered, and the worker's memory stays
    bounded: unread answers wait in socket buffers, not in the server's heap."""
    pipelined = 100
    requests_each = 2_000
    request = b"GET /v1/stock/A HTTP/1.1\r\nHost: stockguard.test\r\n\r\n"
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN}
    with serve("--db", f"sqlite:///{tmp_path}/pipe.db", env=env) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=GUARD_S) as client:
            answer = await client.put(
                "/v1/stock/A", json={"on_hand": 5}, headers=bearer(ADMIN_TOKEN)
            )
            assert answer.status_code == 200, answer.text
            rss_before = worker_rss_bytes(served)
            with ExitStack() as sockets:
                hogs = [sockets.enter_context(connect(served)) for _ in range(pipelined)]
                for hog in hogs:
                    hog.setblocking(False)
                    sent = 0
                    payload = request * requests_each
                    while sent < len(payload):  # until the socket buffers are full
                        try:
                            sent += hog.send(payload[sent:])
                        except BlockingIOError:
                            break
                await asyncio.sleep(1.0)
                answers = [await client.get("/v1/stock/A") for _ in range(100)]
                rss_during = worker_rss_bytes(served)

    assert [answer.status_code for answer in answers] == [200] * 100
    growth_mb = (rss_during - rss_before) / 1e6
    print(f"\n[pipelining] worker RSS {rss_before / 1e6:.0f} MB -> {rss_during / 1e6:.0f} MB")
    assert growth_mb < 100, f"worker memory grew by {growth_mb:.0f} MB"
