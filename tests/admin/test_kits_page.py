"""The kits page in Chromium: define a kit, see what can be sold, and sell it over HTTP."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from .conftest import SQLITE_ONLY
from .support import Shop, screenshot

pytestmark = pytest.mark.asyncio


@SQLITE_ONLY
async def test_a_kit_defined_on_the_page_sells_its_components(
    admin: Page, shop: Shop, backend: str
) -> None:
    await shop.set_stock("SOCK-BLACK", 9)
    await shop.set_stock("TOTE-BAG", 5)
    await admin.get_by_role("link", name="Kits").click()
    await expect(admin.get_by_text("No kits yet.")).to_be_visible()

    form = admin.locator("#kit-form")
    await admin.get_by_text("New kit", exact=True).click()
    await form.get_by_label("Kit SKU").fill("GIFT-BOX")
    await form.get_by_label("Components", exact=False).fill("SOCK-BLACK 2\nTOTE-BAG")
    await form.get_by_role("button", name="Save kit").click()
    await expect(admin.locator("#flash")).to_have_text(
        "Kit GIFT-BOX is 2 × SOCK-BLACK, 1 × TOTE-BAG."
    )
    row = admin.locator('tr[data-kit="GIFT-BOX"]')
    await expect(row.locator('[data-slot="available"]')).to_have_text("4")  # 9 socks: 4 pairs

    # A cart with two boxes and a loose pair of socks takes 6 socks and 2 bags at once.
    held = await shop.reserve("gift-1", {"GIFT-BOX": 2, "SOCK-BLACK": 2})
    assert sorted((i["sku"], i["quantity"]) for i in held["items"]) == [
        ("SOCK-BLACK", 6),
        ("TOTE-BAG", 2),
    ]
    await admin.reload()
    await expect(row.locator('[data-slot="available"]')).to_have_text("1")  # 3 socks left
    await screenshot(admin, backend, "admin-kits")

    # A definition never changes: another one for the same SKU is refused, nothing written.
    await admin.get_by_text("New kit", exact=True).click()
    await form.get_by_label("Kit SKU").fill("GIFT-BOX")
    await form.get_by_label("Components", exact=False).fill("SOCK-BLACK 1")
    await form.get_by_role("button", name="Save kit").click()
    await expect(admin.locator("#kit-error")).to_contain_text("GIFT-BOX")
    await expect(form.get_by_label("Components", exact=False)).to_have_value("SOCK-BLACK 1")
    kit = (await shop.client.get("/v1/kits/GIFT-BOX")).json()
    assert kit["components"] == [
        {"sku": "SOCK-BLACK", "quantity": 2},
        {"sku": "TOTE-BAG", "quantity": 1},
    ]
    assert kit["available"] == 1
