"""A test double of stockguard that oversells by one: the audit of ``stockguard loadtest``
must catch it.

It answers the few routes the load test uses, with stockguard's shapes, from memory: stock
set by ``PUT /v1/stock/{sku}``, holds by ``POST /v1/reservations``, which grants one unit
more than there is. ``python oversell_app.py PORT`` serves it (granian, one worker: one
process's memory is the whole state). ``/metrics`` is absent on purpose: the load test must
do without it.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

stock: dict[str, dict[str, int]] = {}
reservations: dict[str, dict[str, Any]] = {}
oversold: set[str] = set()


def level(sku: str) -> dict[str, Any]:
    found = stock[sku]
    available = found["on_hand"] - found["reserved"]
    return {"sku": sku, **found, "available": available, "version": 1}


def answer_for(method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
    parts = path.strip("/").split("/")
    if path == "/healthz":
        return 200, {"status": "ok"}
    if method == "PUT" and parts[:2] == ["v1", "stock"] and len(parts) == 3:
        stock[parts[2]] = {"on_hand": int(json.loads(body)["on_hand"]), "reserved": 0}
        return 200, level(parts[2])
    if method == "GET" and path == "/v1/stock":
        wanted = parse_qs(query).get("sku", [])
        return 200, [level(sku) for sku in wanted if sku in stock]
    if method == "POST" and path == "/v1/reservations":
        request = json.loads(body)
        (item,) = request["items"]
        sku, quantity = item["sku"], int(item["quantity"])
        found = stock[sku]
        fits = found["on_hand"] - found["reserved"] >= quantity
        if not fits and sku not in oversold:  # the bug: one more than there is
            oversold.add(sku)
            fits = True
        if not fits:
            return 409, {"type": "https://stockguard.dev/problems/out-of-stock", "status": 409}
        found["reserved"] += quantity
        made = {
            "id": str(uuid.uuid4()),
            "order_id": request["order_id"],
            "customer_id": None,
            "status": "held",
            "items": [{"sku": sku, "quantity": quantity}],
            "expires_at": "2100-01-01T00:00:00.000Z",
            "created_at": "2026-01-01T00:00:00.000Z",
        }
        reservations[made["id"]] = made
        return 201, made
    held = reservations.get(parts[2]) if len(parts) == 3 else None
    if method == "GET" and parts[:2] == ["v1", "reservations"] and held is not None:
        return 200, held
    return 404, {"status": 404}


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
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    status, payload = answer_for(
        scope["method"], scope["path"], scope["query_string"].decode(), b"".join(chunks)
    )
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    from stockguard.service.server import granian_server

    granian_server("oversell_app:app", factory=False, port=int(sys.argv[1]), workers=1).serve()
