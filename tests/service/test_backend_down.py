"""A backend that is down answers 503 with Retry-After (never a 500, never a hang), and
the service recovers by itself when the backend comes back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from stockguard.config import Settings
from stockguard.service import create_app

from .support import ADMIN_TOKEN, Api, assert_problem, bearer, free_port


@contextlib.asynccontextmanager
async def service(database_url: str, sweep_interval_s: float = 3_600.0) -> AsyncIterator[Api]:
    settings = Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        api_token=None,
        migrate=False,
        pool_size=2,
        sweep_interval_s=sweep_interval_s,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://stockguard.test"
        ) as client,
    ):
        yield Api(client)


def down_url(backend: str, tmp_path: Path) -> str:
    port = free_port()  # bound a moment ago and released: nothing listens there now
    return {
        "sqlite": f"sqlite:///{tmp_path}/no-such-directory/stockguard.db",
        "postgres": f"postgresql://postgres@127.0.0.1:{port}/test",
        "mysql": f"mysql://root@127.0.0.1:{port}/test",
    }[backend]


async def assert_unavailable(answer: httpx.Response) -> None:
    assert_problem(answer, 503, "store-unavailable")
    assert int(answer.headers["retry-after"]) >= 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_every_store_route_answers_503_with_retry_after_when_the_backend_is_down(
    backend: str, tmp_path: Path
) -> None:
    async with asyncio.timeout(60), service(down_url(backend, tmp_path)) as api:
        # One at a time, and no sweep meanwhile: a caller queued on the pool behind a
        # failing connect waits the pool's timeout (10 s; SQLite 60 s) before its 503.
        calls = [
            lambda: api.client.post(
                "/v1/reservations", json={"order_id": "o", "items": [{"sku": "A", "quantity": 1}]}
            ),
            lambda: api.client.get("/v1/reservations/some-id"),
            lambda: api.client.post("/v1/reservations/some-id/confirm"),
            lambda: api.client.post("/v1/reservations/some-id/release"),
            lambda: api.client.get("/v1/stock/A"),
            lambda: api.client.get("/v1/stock?sku=A"),
            lambda: api.client.get("/v1/products/some-id"),
            lambda: api.client.get("/v1/reservations", headers=api.admin),
            lambda: api.client.put("/v1/stock/A", json={"on_hand": 1}, headers=api.admin),
            lambda: api.client.post(
                "/v1/stock/A/adjustments", json={"delta": 1, "reason": "x"}, headers=api.admin
            ),
            lambda: api.client.get("/v1/stock/A/movements", headers=api.admin),
            lambda: api.client.post("/v1/products", json={"name": "Tee"}, headers=api.admin),
            lambda: api.client.get("/readyz"),
        ]
        for call in calls:
            await assert_unavailable(await call())
        assert (await api.client.get("/healthz")).status_code == 200


async def failed_sweeps(api: Api) -> float:
    for family in text_string_to_metric_families((await api.client.get("/metrics")).text):
        for found in family.samples:
            if found.name == "stockguard_expiry_sweeps_total" and found.labels == {
                "outcome": "failed"
            }:
                return float(found.value)
    return 0.0


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_the_sweeper_keeps_sweeping_while_the_backend_is_down(
    backend: str, tmp_path: Path
) -> None:
    async with asyncio.timeout(60), service(down_url(backend, tmp_path), 0.05) as api:
        before = await failed_sweeps(api)
        await asyncio.sleep(0.5)
        after = await failed_sweeps(api)
        assert (await api.client.get("/healthz")).status_code == 200

    assert after >= before + 3


class TcpSwitch:
    """A TCP forwarder to the real database that can be switched off and on: off closes
    the listening socket AND every forwarded connection, like a database that died."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def on(self) -> None:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def off(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()
        self.server = None

    async def _forward(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self.writers |= {client_w, server_w}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while chunk := await reader.read(65_536):
                    writer.write(chunk)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_the_service_recovers_by_itself_when_the_backend_comes_back(db_url: str) -> None:
    """The app talks to the real database through a switch: off at start, on, off again
    (killing pooled connections), on again. Each phase answers without a restart."""
    url = make_url(db_url)
    switch = TcpSwitch(url.host or "127.0.0.1", url.port or 0)
    through_switch = url.set(host="127.0.0.1", port=switch.port).render_as_string(
        hide_password=False
    )

    def reserve(order_id: str) -> dict[str, object]:
        return {"order_id": order_id, "items": [{"sku": "A", "quantity": 1}]}

    async with asyncio.timeout(90), service(through_switch) as api:
        await assert_unavailable(await api.client.get("/readyz"))
        await assert_unavailable(await api.client.post("/v1/reservations", json=reserve("o1")))

        await switch.on()
        assert (await api.client.get("/readyz")).status_code == 200
        await api.set_stock("A", 10)
        assert (await api.client.post("/v1/reservations", json=reserve("o1"))).status_code == 201

        await switch.off()
        await assert_unavailable(await api.client.post("/v1/reservations", json=reserve("o2")))
        await assert_unavailable(await api.client.get("/v1/stock/A"))

        await switch.on()
        assert (await api.client.post("/v1/reservations", json=reserve("o2"))).status_code == 201
        level = (await api.client.get("/v1/stock/A", headers=bearer(ADMIN_TOKEN))).json()
        assert (level["on_hand"], level["reserved"]) == (10, 2)
        await switch.off()
