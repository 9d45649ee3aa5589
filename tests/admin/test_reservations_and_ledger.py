"""Reservations on the admin page (filters, release) and a SKU's movement ledger."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from .conftest import SQLITE_ONLY
from .support import Shop, screenshot, stock_row

pytestmark = [pytest.mark.asyncio, SQLITE_ONLY]


async def test_reservations_filter_by_status_sku_and_order(admin: Page, shop: Shop) -> None:
    await shop.set_stock("HAT", 10)
    await shop.set_stock("SCARF", 10)
    await shop.reserve("order-a", {"HAT": 1})
    await shop.confirm((await shop.reserve("order-b", {"HAT": 2}))["id"])
    await shop.reserve("order-c", {"SCARF": 3, "HAT": 1})
    rows = admin.locator("#reservations tbody tr")
    filters = admin.locator("#reservation-filters")

    await admin.goto(f"{shop.url}/admin")
    await expect(rows).to_have_count(3)
    await expect(rows.first).to_have_attribute("data-order-id", "order-c")  # newest first

    await filters.get_by_label("Status").select_option("held")
    await filters.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)
    await expect(rows.locator('[data-field="status"]')).to_have_text(["held", "held"])

    await filters.get_by_label("Status").select_option("")
    await filters.get_by_label("SKU").fill("SCARF")
    await filters.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-order-id", "order-c")

    await filters.get_by_label("SKU").fill("")
    await filters.get_by_label("Order").fill("order-b")
    await filters.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator('[data-field="status"]')).to_have_text("confirmed")

    await admin.goto(f"{shop.url}/admin?status=lost&cursor=zz")
    await expect(admin.locator(".banner-warning").first).to_contain_text("Status: must be one of")
    await expect(rows).to_have_count(3)


async def test_releasing_a_held_reservation_gives_its_units_back(admin: Page, shop: Shop) -> None:
    await shop.set_stock("HAT", 5)
    held = await shop.reserve("order-r", {"HAT": 3})
    await admin.goto(f"{shop.url}/admin?status=held")
    row = admin.locator(f'tr[data-reservation-id="{held["id"]}"]')
    await expect(stock_row(admin, "HAT").locator('[data-field="available"]')).to_have_text("2")

    await row.get_by_role("button", name="Release").click()
    await expect(admin.locator("#flash")).to_have_text(
        "Released order order-r: 3 unit(s) are available again."
    )
    await expect(admin).to_have_url(f"{shop.url}/admin?status=held")
    await expect(row).to_have_count(0)
    await expect(stock_row(admin, "HAT").locator('[data-field="available"]')).to_have_text("5")
    assert (await shop.reservation(held["id"]))["status"] == "released"
    assert (await shop.stock("HAT"))["reserved"] == 0


async def test_a_reservation_that_ended_meanwhile_is_not_released(admin: Page, shop: Shop) -> None:
    await shop.set_stock("HAT", 5)
    held = await shop.reserve("order-paid", {"HAT": 2})
    await admin.goto(f"{shop.url}/admin")
    await shop.confirm(held["id"])
    row = admin.locator(f'tr[data-reservation-id="{held["id"]}"]')
    await row.get_by_role("button", name="Release").click()
    await expect(admin.locator("#flash")).to_have_text(
        "That reservation is already confirmed; nothing was changed."
    )
    assert (await shop.reservation(held["id"]))["status"] == "confirmed"
    assert (await shop.stock("HAT"))["on_hand"] == 3


async def test_the_ledger_of_a_sku_lists_every_movement(
    admin: Page, shop: Shop, backend: str
) -> None:
    await shop.set_stock("LAMP", 10)
    await shop.confirm((await shop.reserve("order-l1", {"LAMP": 2}))["id"])
    await shop.reserve("order-l2", {"LAMP": 1})
    await admin.goto(f"{shop.url}/admin")
    await stock_row(admin, "LAMP").get_by_role("link", name="LAMP").click()
    await expect(admin.get_by_role("heading", name="LAMP", exact=True)).to_be_visible()

    await stock_row(admin, "LAMP").get_by_role("button", name="Adjust").click()
    dialog = admin.locator("#adjust-dialog")
    await dialog.get_by_label("Change (+/−)").fill("+4")
    await dialog.get_by_label("Reason").fill("delivery received")
    await dialog.get_by_role("button", name="Apply").click()
    await expect(stock_row(admin, "LAMP").locator('[data-field="on_hand"]')).to_have_text("12")

    await admin.reload()
    ledger = admin.locator("#ledger tbody tr")
    await expect(ledger).to_have_count(3)
    await expect(ledger.locator("td:nth-child(4)")).to_have_text(
        ["delivery received", "Sale (reservation confirmed)", "Created"]
    )
    await expect(ledger.locator("td:nth-child(2)")).to_have_text(["+4", "-2", "+10"])
    await expect(ledger.locator("td:nth-child(3)")).to_have_text(["12", "8", "10"])
    await expect(admin.locator("#live-status")).to_have_attribute("data-state", "ok")
    await screenshot(admin, backend, "admin-sku-ledger")

    await admin.goto(f"{shop.url}/admin/sku?sku=NO-SUCH-SKU")
    await expect(admin.get_by_role("heading", name="Not found")).to_be_visible()
    await expect(admin.locator(".form-error")).to_have_text("No SKU NO-SUCH-SKU exists.")
