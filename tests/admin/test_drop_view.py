"""The drop view in Chromium while a real burst of buyers hits ``serve --workers 2``.

Buyers reach both workers; the page's polls reach one of them at a time. The charts must
show the burst (reservations/s above zero, available units falling to none, refusals once
it sold out) and the page's totals must be exactly the answers the buyers got: figures
from one worker alone would fall short. Waits are bounded by counts of waves and polls,
never by a clock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Locator, Page

from .support import Shop, served_shop, sign_in

pytestmark = pytest.mark.asyncio

SKU = "DROP-TEE"
UNITS = 100_000
"""More than the burst can take: it runs until the page has charted it."""
WAVE = 32
WAVES_MAX = 2_000
POLLS_MAX = 300
POLL_S = 0.1


async def _figure(chart: Locator, name: str) -> float | None:
    value = await chart.get_attribute(f"data-{name}")
    return float(value) if value else None


async def _until(page: Page, check: str, what: str) -> None:
    """Waits for a JavaScript condition on the page, polling a bounded number of times."""
    for _ in range(POLLS_MAX):
        if await page.evaluate(check):
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"the page never showed {what}")


class Buyers:
    """Buyers of one unit each, in waves of concurrent requests, counting the answers."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.sent = 0
        self.statuses: list[int] = []

    async def wave(self) -> None:
        first = self.sent
        self.sent += WAVE
        answers = await asyncio.gather(
            *(
                self.client.post(
                    "/v1/reservations",
                    json={"order_id": f"buyer-{n}", "items": [{"sku": SKU, "quantity": 1}]},
                )
                for n in range(first, first + WAVE)
            )
        )
        self.statuses += [answer.status_code for answer in answers]

    async def until(self, chart: Locator, name: str) -> None:
        """Waves until ``chart``'s ``name`` figure is above zero."""
        for _ in range(WAVES_MAX):
            await self.wave()
            if (await _figure(chart, name) or 0) > 0:
                return
        raise AssertionError(f"{WAVES_MAX} waves and the chart's {name} stayed at zero")


@pytest.mark.parametrize("backend", ["postgres"])
async def test_the_drop_view_charts_a_burst_summed_over_two_workers(
    page: Page, db_url: str, tmp_path: Path
) -> None:
    async with served_shop(db_url, tmp_path / "serve", workers=2, strategy="coalescing") as shop:
        await shop.set_stock(SKU, UNITS)
        await sign_in(page, shop)
        await page.goto(f"{shop.url}/admin/drop?sku={SKU}")
        await _until(
            page,
            "document.getElementById('drop').dataset.counting === '2'",
            "both workers counting the SKU",
        )
        reservations = page.locator('[data-chart="reservations"]')
        refusals = page.locator('[data-chart="refusals"]')
        available = page.locator('[data-chart="available"]')
        p95 = page.locator('[data-chart="p95"]')

        limits = httpx.Limits(max_connections=WAVE, max_keepalive_connections=WAVE)
        async with httpx.AsyncClient(base_url=shop.url, timeout=60, limits=limits) as client:
            buyers = Buyers(client)
            await buyers.until(reservations, "peak")
            await _sell_out(shop)
            await buyers.until(refusals, "peak")

        await _until(
            page,
            "document.querySelector('[data-chart=available]').dataset.latest === '0'",
            "available units at 0",
        )
        assert await _figure(available, "first") == UNITS
        assert (await _figure(reservations, "peak") or 0) > 0
        assert (await _figure(refusals, "peak") or 0) > 0
        assert (await _figure(p95, "peak") or 0) > 0

        answer = await page.request.get(f"{shop.url}/admin/api/drop?sku={SKU}")
        totals = await answer.json()
        held = buyers.statuses.count(201)
        assert totals["held"] == held > 0
        assert totals["refused"] == len(buyers.statuses) - held > 0
        assert totals["outcomes"] == {"held": held, "out-of-stock": totals["refused"]}
        assert totals["latency"]["counts"][-1] == len(buyers.statuses)
        assert totals["counting"] == 2
        assert await page.locator('[data-figure="held"]').text_content() == str(held)


async def _sell_out(shop: Shop) -> None:
    """On hand down to what is held: nothing left for the next buyer."""
    stock = await shop.stock(SKU)
    await shop.set_stock(SKU, stock["reserved"])
