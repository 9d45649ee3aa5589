"""``stockguard events latency``: commit -> webhook delivery latency under a flash sale.

Three processes, as in production: this one sells (an engine on the database, buyers
arriving open-loop at ``--rate`` a second, the flash workload's 10,000 buyers for 1,000
units by default, then every hold confirmed or released so the outbox keeps moving), a
real ``stockguard relay`` delivers, and a webhook receiver (a stdlib HTTP server in a
child process) notes when each event arrives. An event's latency is its arrival time
minus its ``at_ms`` (the database's clock at the change, taken just before its commit; the
receiver, the relay and the database share this host's clock), so the figure slightly
over-states commit -> delivery. docs/benchmarks.md#stock-events-delivery-latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from stockguard.engine import Engine
from stockguard.events import state
from stockguard.stores.sql import outbox
from stockguard.stores.sql.store import SqlStore

SETTLE_POLLS_MAX = 1_200


def receive(port: int, out: Path) -> None:
    """The receiver process: appends ``id at_ms received_ms`` per POST until SIGTERM."""
    lines: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as any production receiver

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            now_ms = time.time() * 1000
            envelope = json.loads(body)
            lines.append(f"{envelope['id']} {envelope['at_ms']} {now_ms:.3f}\n")
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # readiness
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.05)
    out.write_text("".join(lines))


async def run(
    db: str, strategy: str, rate: float, requests: int, units: int, work: Path
) -> dict[str, Any]:
    """One measured sale; returns the figures (also printed by the command)."""
    port = _free_port()
    received = work / "received.txt"
    receiver = subprocess.Popen(  # noqa: ASYNC220, S603 - starts once, before the sale
        [sys.executable, "-m", "stockguard.events.latency", "--receive", str(port), str(received)]
    )
    engine = await Engine.open(db, strategy)
    assert isinstance(engine.store, SqlStore), "the relay needs a SQL database"
    await state.create_endpoint(
        engine.store, f"http://127.0.0.1:{port}/hook", None, "all", True, "latency"
    )
    relay = subprocess.Popen(  # noqa: ASYNC220, S603 - starts once, before the sale
        [Path(sys.executable).with_name("stockguard"), "relay", "--db", db],
        stdout=(work / "relay.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        await _ready(engine, port)  # receiver up, relay holding the lease: then sell
        await engine.set_on_hand("FLASH-1", units)
        held: list[str] = []

        async def buyer(n: int) -> None:
            try:
                outcome = await engine.reserve(f"lat-{n}", [("FLASH-1", 1)])
            except Exception:
                return
            held.append(outcome.reservation.id)

        started = time.perf_counter()
        tasks = []
        for n in range(requests):
            due = started + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            tasks.append(asyncio.create_task(buyer(n)))
        await asyncio.gather(*tasks)
        sold_s = time.perf_counter() - started
        endings = []
        for index, rid in enumerate(held):
            due = started + sold_s + index / rate
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            action = engine.confirm if index % 2 else engine.release
            endings.append(asyncio.create_task(action(rid)))
        await asyncio.gather(*endings, return_exceptions=True)
        await engine.strategy.settle()
        for _ in range(SETTLE_POLLS_MAX):
            await asyncio.sleep(0.1)
            if await _delivered_all(engine):
                break
        top = await outbox.last_seq(engine.store)
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(30)
        await engine.close()
    rows = [line.split() for line in received.read_text().splitlines()]
    first: dict[int, float] = {}
    for event_id, at_ms, got_ms in rows:
        first.setdefault(int(event_id), float(got_ms) - int(at_ms))
    lat = np.array(sorted(first.values()))
    return {
        "events": len(first),
        "last_event_id": top,
        "held": len(held),
        "rate_per_s": rate,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
    }


async def _delivered_all(engine: Engine) -> bool:
    """Every event numbered and every sink's stored cursor at the last one."""
    assert isinstance(engine.store, SqlStore)
    count, _ = await outbox.unsequenced(engine.store)
    top = await outbox.last_seq(engine.store)
    cursors = await state.cursors(engine.store)
    return count == 0 and all(c.last_seq >= top for c in cursors.values())


async def _ready(engine: Engine, port: int) -> None:
    import httpx

    from stockguard.events.lease import lease_holder

    assert isinstance(engine.store, SqlStore)
    async with httpx.AsyncClient() as client:
        for _ in range(SETTLE_POLLS_MAX):
            try:
                up = (await client.get(f"http://127.0.0.1:{port}/")).status_code == 204
            except httpx.TransportError:
                up = False
            held = await lease_holder(engine.store)
            async with engine.store.transaction(read_only=True) as tx:
                now = await tx.now_ms()
            if up and held is not None and held[2] > now:
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("the receiver or the relay did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--receive":
    receive(int(sys.argv[2]), Path(sys.argv[3]))
