"""Helpers of the admin page's browser tests: a real ``stockguard serve``, its API, pictures.

``served_shop`` starts the installed ``stockguard serve`` command in a subprocess on a
free 127.0.0.1 port, on the test's database, waits for ``/healthz`` with bounded polling
and always stops it (SIGTERM, then kill). ``Shop`` is an httpx client on its HTTP API:
what a buyer or another admin does while the page is open.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page

ADMIN_TOKEN = "admin-page-test-token"
SERVE_START_S_MAX = 60.0
SERVE_STOP_S_MAX = 40.0
HEALTH_POLL_S = 0.1
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOTS = (
    DOCS_SCREENSHOTS
    if os.environ.get("STOCKGUARD_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "stockguard-screenshots"
)
"""docs/screenshots is rewritten only on request, so a plain test run leaves the tree clean."""
VIEWPORT = {"width": 1280, "height": 900}


@dataclass
class Shop:
    """The served service: its URL and the HTTP API calls the tests make beside the page."""

    url: str
    client: httpx.AsyncClient

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def _ok(self, answer: httpx.Response, status: int = 200) -> Any:
        assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
        return answer.json()

    async def set_stock(self, sku: str, on_hand: int) -> dict[str, Any]:
        answer = await self.client.put(
            f"/v1/stock/{sku}", json={"on_hand": on_hand}, headers=self.admin
        )
        return dict(await self._ok(answer))

    async def create_product(
        self, name: str, options: dict[str, list[str]] | None = None, initial_on_hand: int = 0
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "initial_on_hand": initial_on_hand}
        if options:
            body["options"] = options
        answer = await self.client.post("/v1/products", json=body, headers=self.admin)
        return dict(await self._ok(answer, 201))

    async def stock(self, sku: str) -> dict[str, Any]:
        return dict(await self._ok(await self.client.get(f"/v1/stock/{sku}")))

    async def stocks(self, skus: list[str]) -> list[dict[str, Any]]:
        answer = await self.client.get("/v1/stock", params=[("sku", s) for s in skus])
        return list(await self._ok(answer))

    async def reserve(self, order_id: str, items: dict[str, int], **extra: Any) -> dict[str, Any]:
        body = {
            "order_id": order_id,
            "items": [{"sku": sku, "quantity": q} for sku, q in items.items()],
            **extra,
        }
        return dict(await self._ok(await self.client.post("/v1/reservations", json=body), 201))

    async def confirm(self, reservation_id: str) -> dict[str, Any]:
        answer = await self.client.post(f"/v1/reservations/{reservation_id}/confirm")
        return dict(await self._ok(answer))

    async def release(self, reservation_id: str) -> dict[str, Any]:
        answer = await self.client.post(f"/v1/reservations/{reservation_id}/release")
        return dict(await self._ok(answer))

    async def reservation(self, reservation_id: str) -> dict[str, Any]:
        return dict(await self._ok(await self.client.get(f"/v1/reservations/{reservation_id}")))

    async def policy(self, sku: str) -> dict[str, Any]:
        """The SKU's stock policy as the admin API answers it, without ``sku``."""
        answer = await self.client.get(f"/v1/stock/{sku}/policy", headers=self.admin)
        found = dict(await self._ok(answer))
        found.pop("sku")
        return found

    async def set_policy(
        self, sku: str, expected: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Another admin's policy write through the API (compare-and-set with ``expected``)."""
        body = {**fields, **({"expected": expected} if expected is not None else {})}
        answer = await self.client.put(f"/v1/stock/{sku}/policy", json=body, headers=self.admin)
        return dict(await self._ok(answer))

    async def movements(self, sku: str) -> list[dict[str, Any]]:
        answer = await self.client.get(f"/v1/stock/{sku}/movements", headers=self.admin)
        return list((await self._ok(answer))["items"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stockguard_command() -> list[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).with_name("stockguard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stockguard.cli"]


@asynccontextmanager
async def served_shop(
    db_url: str,
    run_dir: Path,
    *,
    workers: int = 1,
    strategy: str = "conditional",
    env: dict[str, str] | None = None,
) -> AsyncIterator[Shop]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STOCKGUARD_")}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    environment.update(
        STOCKGUARD_ADMIN_TOKEN=ADMIN_TOKEN,
        STOCKGUARD_STRATEGY=strategy,
        STOCKGUARD_POOL_SIZE="3",
        STOCKGUARD_WORKERS=str(workers),
    )
    environment.update(env or {})
    log = _log_file(run_dir, port)
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *stockguard_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            db_url,
            cwd=run_dir,
            env=environment,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            await _wait_healthy(client, process, log)
            yield Shop(url, client)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), SERVE_STOP_S_MAX)
            except TimeoutError:
                process.kill()
                await process.wait()


def _log_file(run_dir: Path, port: int) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir / f"serve-{port}.log"


def _output(log: Path) -> str:
    return log.read_text(errors="replace")[-5_000:]


async def _wait_healthy(
    client: httpx.AsyncClient, process: asyncio.subprocess.Process, log: Path
) -> None:
    for _ in range(int(SERVE_START_S_MAX / HEALTH_POLL_S)):
        if process.returncode is not None:
            raise AssertionError(f"stockguard serve exited early:\n{_output(log)}")
        try:
            if (await client.get("/healthz", timeout=1.0)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(HEALTH_POLL_S)
    raise AssertionError(f"stockguard serve not healthy in {SERVE_START_S_MAX} s:\n{_output(log)}")


async def sign_in(page: Page, shop: Shop, token: str = ADMIN_TOKEN) -> None:
    await page.goto(f"{shop.url}/admin/sign-in")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


def stock_row(page: Page, sku: str) -> Any:
    return page.locator(f'tr[data-sku="{sku}"]').first


async def screenshot(page: Page, backend: str, name: str, *, full_page: bool = False) -> None:
    """Saves <name>.png (docs/screenshots with STOCKGUARD_UPDATE_SCREENSHOTS=1); only the
    SQLite run writes, so runs never race."""
    if backend != "sqlite":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(
        path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page, animations="disabled"
    )
