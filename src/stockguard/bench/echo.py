"""The ceiling of the HTTP benchmark: a bare ASGI app, JSON in → JSON out, no database.

``stockguard bench-http`` serves it on the same server software and settings as
``stockguard serve`` and drives both with the same client, so "what fraction of a bare
Python web app do we reach" is measured, not guessed. ``GET`` answers a fixed JSON
document (the ceiling of ``/healthz``); ``POST`` parses the body and answers it back
(the ceiling of a JSON API call).
"""

from __future__ import annotations

import json
import sys

from starlette.types import Message, Receive, Scope, Send

HEALTHY = b'{"status":"ok"}'
HEADERS = [(b"content-type", b"application/json")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks: list[bytes] = []
    while True:
        part: Message = await receive()
        chunks.append(part.get("body", b""))
        if not part.get("more_body", False):
            break
    if scope["method"] == "POST":
        body = json.dumps(json.loads(b"".join(chunks)), separators=(",", ":")).encode()
    else:
        body = HEALTHY
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """``python -m stockguard.bench.echo PORT WORKERS``: serve the echo like ``serve``."""
    from stockguard.service.server import granian_server

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    granian_server("stockguard.bench.echo:app", factory=False, port=port, workers=workers).serve()


if __name__ == "__main__":
    main()
