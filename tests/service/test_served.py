"""The real ``stockguard serve`` process: a flash sale over HTTP, N workers, shutdown.

Each test starts the command in a subprocess on a free port (see ``support.run_serve``)
and talks to it over real sockets with httpx. The figures of the flash-sale runs are
printed (``pytest -s``) for the record; no test ever asserts on time.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stockguard.stores.sql.audit import audit
from stockguard.stores.sql.store import SqlStore

from .support import ADMIN_TOKEN, Served, assert_problem, bearer

Serve = Callable[..., AbstractContextManager[Served]]

CLIENTS = 500
UNITS = 100
CLIENT_TIMEOUT_S = 120.0


async def flash_sale(served: Served, admin_token: str, label: str) -> Counter[int]:
    """500 concurrent clients each reserve 1 unit of a SKU holding 100."""
    async with httpx.AsyncClient(
        base_url=served.url,
        timeout=CLIENT_TIMEOUT_S,
        limits=httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS),
    ) as client:
        answer = await client.put(
            "/v1/stock/HOT", json={"on_hand": UNITS}, headers=bearer(admin_token)
        )
        assert answer.status_code == 200, answer.text

        async def buy(n: int) -> httpx.Response:
            return await client.post(
                "/v1/reservations",
                json={"order_id": f"order-{n}", "items": [{"sku": "HOT", "quantity": 1}]},
            )

        started_s = time.perf_counter()
        answers = await asyncio.gather(*(buy(n) for n in range(CLIENTS)))
        wall_s = time.perf_counter() - started_s
        stock = (await client.get("/v1/stock/HOT")).json()

    statuses = Counter(answer.status_code for answer in answers)
    print(
        f"\n[{label}] {CLIENTS} requests from {CLIENTS} concurrent clients: "
        f"statuses {dict(statuses)}; wall {wall_s:.2f} s ({CLIENTS / wall_s:.0f} req/s); "
        f"stock {stock}"
    )
    for answer in answers:
        if answer.status_code == 409:
            problem = assert_problem(answer, 409, "out-of-stock")
            assert problem["shortfalls"] == [{"sku": "HOT", "requested": 1, "available": 0}]
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (UNITS, UNITS, 0)
    return statuses


def worker_processes(served: Served) -> list[str]:
    """Child processes of ``serve`` that run a granian worker (Linux /proc)."""
    pid = served.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    commands = [Path(f"/proc/{child}/cmdline").read_bytes() for child in children]
    return [child for child, cmd in zip(children, commands, strict=True) if b"spawn_main" in cmd]


async def metric(served: Served, name: str, **labels: str) -> float:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                total += found.value
    return total


async def test_500_clients_racing_for_100_units_get_exactly_100_holds_on_sqlite(
    serve: Serve, tmp_path: Path
) -> None:
    """The embedded default, one worker, the admin token generated and printed by serve."""
    with serve("--db", f"sqlite:///{tmp_path}/flash.db") as served:
        printed = served.stdout.read_text()
        token = re.search(r"admin token \(generated, shown once\): (\S+)", printed)
        assert token is not None, printed
        assert f"admin page: {served.url}/admin" in printed

        statuses = await flash_sale(served, token.group(1), "sqlite, 1 worker")

        assert statuses == {201: UNITS, 409: CLIENTS - UNITS}
        assert served.stop() == 0


@pytest.mark.parametrize("backend", ["postgres"])
async def test_500_clients_racing_for_100_units_get_exactly_100_holds_on_two_workers(
    serve: Serve, db_url: str
) -> None:
    """Two worker processes on one port and one PostgreSQL database; the metrics of both
    are summed by Prometheus' multi-process mode."""
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN, "STOCKGUARD_POOL_SIZE": "8"}
    with serve("--db", db_url, "--workers", "2", env=env) as served:
        assert "admin token" not in served.stdout.read_text()
        assert len(worker_processes(served)) == 2

        statuses = await flash_sale(served, ADMIN_TOKEN, "postgres, 2 workers")

        assert statuses == {201: UNITS, 409: CLIENTS - UNITS}
        route = {"route": "/v1/reservations", "method": "POST"}
        assert (
            await metric(served, "stockguard_http_requests_total", status="201", **route) == UNITS
        )
        assert await metric(served, "stockguard_http_requests_total", status="409", **route) == (
            CLIENTS - UNITS
        )
        assert served.stop() == 0


async def test_sigterm_finishes_the_requests_in_flight_and_writes_nothing_half(
    serve: Serve, tmp_path: Path
) -> None:
    """SIGTERM lands while 300 reservations are being sent: every request answered 201
    is a held reservation in the database afterwards, the tables pass the audit, and the
    process exits 0 after closing its pools."""
    database = f"sqlite:///{tmp_path}/shutdown.db"
    with serve("--db", database, env={"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN}) as served:
        async with httpx.AsyncClient(
            base_url=served.url, timeout=CLIENT_TIMEOUT_S, limits=httpx.Limits(max_connections=100)
        ) as client:
            await client.put("/v1/stock/A", json={"on_hand": 1_000}, headers=bearer(ADMIN_TOKEN))

            async def buy(n: int) -> int:
                try:
                    answer = await client.post(
                        "/v1/reservations",
                        json={"order_id": f"order-{n}", "items": [{"sku": "A", "quantity": 1}]},
                    )
                except httpx.TransportError:
                    return 0  # refused or cut before the server took it
                return answer.status_code

            buying = [asyncio.create_task(buy(n)) for n in range(300)]
            await asyncio.sleep(0.3)
            served.process.send_signal(signal.SIGTERM)
            statuses = Counter(await asyncio.gather(*buying))
        exit_code = served.process.wait(60)

    store = SqlStore.open(database)
    try:
        report = await audit(store)
        async with store.transaction(read_only=True) as tx:
            levels = await tx.levels(["A"])
        held = levels["A"].reserved
    finally:
        await store.close()
    print(f"\n[shutdown] answers during SIGTERM: {dict(statuses)}; held in the database: {held}")
    assert exit_code == 0, served.output()
    assert set(statuses) <= {0, 201}, statuses
    assert statuses[201] > 0
    assert held == statuses[201]
    assert report.violations == []


@pytest.mark.parametrize("backend", ["postgres"])
async def test_two_workers_sweeping_one_database_end_each_expired_hold_once(
    serve: Serve, db_url: str
) -> None:
    """Both workers sweep every 0.1 s; 60 one-second holds expire under both. Each ends
    exactly once: reserved returns to 0 (a double release would drive it below the
    held total or trip the CHECK) and the tables pass the audit."""
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN, "STOCKGUARD_POOL_SIZE": "4"}
    args = ("--db", db_url, "--workers", "2", "--sweep-interval-s", "0.1")
    with serve(*args, env=env) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=CLIENT_TIMEOUT_S) as client:
            await client.put("/v1/stock/A", json={"on_hand": 100}, headers=bearer(ADMIN_TOKEN))
            held = await asyncio.gather(
                *(
                    client.post(
                        "/v1/reservations",
                        json={
                            "order_id": f"order-{n}",
                            "items": [{"sku": "A", "quantity": 1}],
                            "ttl_seconds": 1,
                        },
                    )
                    for n in range(60)
                )
            )
            assert [answer.status_code for answer in held] == [201] * 60
            await asyncio.sleep(2.5)
            stock = (await client.get("/v1/stock/A")).json()
            listed = await client.get(
                "/v1/reservations", params={"status": "expired", "limit": 100},
                headers=bearer(ADMIN_TOKEN),
            )  # fmt: skip
        expired = await metric(served, "stockguard_reservations_expired_total")
        assert served.stop() == 0

    store = SqlStore.open(db_url, pool_size=1)
    try:
        report = await audit(store)
    finally:
        await store.close()
    assert (stock["on_hand"], stock["reserved"]) == (100, 0)
    assert len(listed.json()["items"]) == 60
    assert expired == 60
    assert report.violations == []
