"""A real local HTTP server that receives webhooks (a ``http.server`` thread): it records
every POST, verifies its signature and can be told to fail for a while."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .verifier import verify


@dataclass
class Received:
    id: int
    headers: dict[str, str]
    body: bytes

    @property
    def envelope(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Receiver:
    url: str = ""
    secret: str | None = None
    """Set once the endpoint exists: every POST is verified with it."""
    status: int = 200
    """What POSTs are answered (a 5xx: the endpoint is "down")."""
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def unique_ids(self) -> list[int]:
        """Event ids in arrival order, each once (first arrival): what a de-duplicating
        consumer applies."""
        seen: set[int] = set()
        ordered: list[int] = []
        with self.lock:
            for item in self.received:
                if item.id not in seen:
                    seen.add(item.id)
                    ordered.append(item.id)
        return ordered

    def envelopes(self) -> dict[int, dict[str, Any]]:
        with self.lock:
            return {item.id: item.envelope for item in self.received}


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            with receiver.lock:
                status = receiver.status
                if status >= 300:
                    receiver.refused += 1
                else:
                    if receiver.secret is not None:
                        try:
                            verify(receiver.secret, headers, body)
                        except Exception:
                            receiver.bad_signatures += 1
                            status = 400
                    if status < 300:
                        receiver.received.append(
                            Received(int(headers["webhook-id"]), headers, body)
                        )
                        receiver.arrived.notify_all()
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
