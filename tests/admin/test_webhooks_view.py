"""The admin page's webhooks view in Chromium against a real ``stockguard serve``: an
endpoint that refuses everything shows its attempts, its events become dead letters, and
the Redeliver button sends one again once the endpoint answers (docs/events.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from events.receiver import running_receiver

from .conftest import SQLITE_ONLY
from .support import Shop, served_shop

pytestmark = [pytest.mark.asyncio, SQLITE_ONLY]


QUICK_DEAD_LETTERS = {
    "STOCKGUARD_EVENTS__WEBHOOK_ATTEMPTS_MAX": "2",
    "STOCKGUARD_EVENTS__WEBHOOK_BACKOFF_S": "0.05",
    "STOCKGUARD_EVENTS__POLL_INTERVAL_S": "0.05",
}
"""The served relay gives up after two quick attempts."""


@pytest.fixture
async def shop(db_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with served_shop(db_url, tmp_path / "serve", env=QUICK_DEAD_LETTERS) as served:
        yield served


async def test_dead_letters_are_listed_and_redelivered_from_the_page(
    admin: Page, shop: Shop
) -> None:
    with running_receiver() as receiver:
        receiver.status = 500
        created = await shop.client.post(
            "/v1/webhooks", json={"url": receiver.url, "types": "stock.*"}, headers=shop.admin
        )
        assert created.status_code == 201, created.text
        receiver.secret = created.json()["secret"]
        await shop.set_stock("WH-1", 5)

        await admin.goto(f"{shop.url}/admin/webhooks")
        dead = admin.locator("#dead-letters tbody tr")
        for _ in range(100):
            if await dead.count():
                break
            await admin.wait_for_timeout(200)
            await admin.reload()
        await expect(dead.first).to_contain_text("stock.changed")
        await expect(admin.locator("#endpoints")).to_contain_text(receiver.url)
        await expect(admin.locator("#deliveries")).to_contain_text("dead")

        receiver.status = 200
        await dead.first.get_by_role("button", name="Redeliver").click()
        await expect(admin.locator("#flash")).to_contain_text("delivered")
        await expect(admin.locator("#dead-letters")).to_contain_text("No dead letters")
        assert len(receiver.unique_ids()) == 1
        assert receiver.bad_signatures == 0
