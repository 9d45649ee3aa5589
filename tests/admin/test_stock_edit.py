"""The admin page in Chromium against a real ``stockguard serve``: stock edits and live figures.

The lost update of docs/design.md#seed-001: an admin form opened at 12 saved 12 back
after a sale had made it 11. Here the edit form keeps the on_hand it showed when it
opened and sends it as expected_on_hand; the store's compare-and-set refuses a stale
write, and the page shows the "stock changed while you were editing" dialog with the new
figures instead of overwriting the sale.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from .conftest import SQLITE_ONLY
from .support import Shop, screenshot, stock_row

pytestmark = pytest.mark.asyncio


async def test_seed_001_a_sale_made_while_the_form_is_open_is_never_overwritten(
    admin: Page, shop: Shop, backend: str
) -> None:
    """The lost-update timeline (docs/design.md#seed-001), step by step, with the buyer
    going through the HTTP API.

    The admin opens the edit form while on_hand is 12; meanwhile a reservation is made
    and confirmed through the API (on_hand 11); the admin saves 12. The dialog must show
    11 and stock must still be 11 when read back through the API. Re-applying then saves
    the intended 12 on top of the 11 the admin has now seen, and the ledger tells it all.
    """
    await shop.create_product("Booth tee", {"size": ["S", "M"]}, initial_on_hand=12)
    sku = "BOOTH-TEE-S"
    await admin.goto(f"{shop.url}/admin")
    row = stock_row(admin, sku)
    await expect(row.locator('[data-field="on_hand"]')).to_have_text("12")

    await row.get_by_role("button", name="Edit stock").click()
    edit = admin.locator("#edit-dialog")
    await expect(edit).to_be_visible()
    await expect(edit.get_by_label("New on hand")).to_have_value("12")
    await screenshot(admin, backend, "admin-edit-dialog")

    held = await shop.reserve("14XXXXX", {sku: 1})
    await shop.confirm(held["id"])
    assert (await shop.stock(sku))["on_hand"] == 11

    await edit.get_by_role("button", name="Save").click()
    conflict = admin.locator("#conflict-dialog")
    await expect(conflict).to_be_visible()
    await expect(conflict).to_contain_text("Stock changed while you were editing")
    await expect(conflict).to_contain_text("Nothing was saved")
    await expect(conflict.locator('[data-slot="was_on_hand"]')).to_have_text("12")
    await expect(conflict.locator('[data-slot="now_on_hand"]')).to_have_text("11")
    await expect(conflict.locator('[data-slot="now_available"]')).to_have_text("11")
    await expect(edit).to_be_hidden()
    assert (await shop.stock(sku))["on_hand"] == 11, "the sale must not be overwritten"
    await screenshot(admin, backend, "admin-stock-changed-dialog")

    await conflict.get_by_role("button", name="Re-apply 12").click()
    await expect(conflict).to_be_hidden()
    await expect(row.locator('[data-field="on_hand"]')).to_have_text("12")
    await expect(admin.locator("#toast")).to_contain_text(f"{sku}: on hand 11 → 12")
    assert (await shop.stock(sku))["on_hand"] == 12
    ledger = [(m["reason"], m["delta"], m["on_hand_after"]) for m in await shop.movements(sku)]
    assert ledger == [("set", 1, 12), ("sale", -1, 11), ("created", 12, 12)]


@SQLITE_ONLY
async def test_stock_moving_again_during_the_dialog_asks_again(admin: Page, shop: Shop) -> None:
    """Re-apply is itself a compare-and-set against the figures the dialog showed."""
    await shop.set_stock("MUG", 20)
    await admin.goto(f"{shop.url}/admin")
    row = stock_row(admin, "MUG")
    await row.get_by_role("button", name="Edit stock").click()
    await admin.locator("#edit-dialog").get_by_label("New on hand").fill("25")
    await shop.confirm((await shop.reserve("first", {"MUG": 2}))["id"])
    await admin.locator("#edit-dialog").get_by_role("button", name="Save").click()
    conflict = admin.locator("#conflict-dialog")
    await expect(conflict.locator('[data-slot="now_on_hand"]')).to_have_text("18")

    await shop.confirm((await shop.reserve("second", {"MUG": 3}))["id"])
    await conflict.get_by_role("button", name="Re-apply 25").click()
    await expect(conflict.locator('[data-slot="now_on_hand"]')).to_have_text("15")
    await expect(conflict).to_be_visible()
    assert (await shop.stock("MUG"))["on_hand"] == 15

    await conflict.get_by_role("button", name="Keep 15").click()
    await expect(conflict).to_be_hidden()
    assert (await shop.stock("MUG"))["on_hand"] == 15


async def test_a_reservation_made_through_the_api_shows_up_without_a_reload(
    admin: Page, shop: Shop, backend: str
) -> None:
    """The open page polls its figures: reserved and available change, and so do badges.

    A marker set on ``window`` before the reservation is still there afterwards, which
    proves the page was never reloaded.
    """
    await shop.set_stock("LIVE-1", 10)
    await admin.goto(f"{shop.url}/admin")
    row = stock_row(admin, "LIVE-1")
    await expect(row.locator('[data-field="available"]')).to_have_text("10")
    await admin.evaluate("window.__notReloaded = true")

    await shop.reserve("live-order-1", {"LIVE-1": 4})
    await expect(row.locator('[data-field="reserved"]')).to_have_text("4")
    await expect(row.locator('[data-field="available"]')).to_have_text("6")
    await expect(row.locator('[data-field="on_hand"]')).to_have_text("10")
    await expect(row.locator('[data-field="state"]')).to_have_text("In stock")

    await shop.reserve("live-order-2", {"LIVE-1": 6})
    await expect(row.locator('[data-field="available"]')).to_have_text("0")
    await expect(row.locator('[data-field="state"]')).to_have_text("Sold out")
    await expect(admin.locator("#count-sold-out")).to_have_text("1")
    assert await admin.evaluate("window.__notReloaded === true")
    await expect(admin.locator("#live-status")).to_have_attribute("data-state", "ok")


@SQLITE_ONLY
async def test_adjustments_add_and_remove_units_with_a_reason(admin: Page, shop: Shop) -> None:
    await shop.set_stock("CAP", 10)
    await admin.goto(f"{shop.url}/admin")
    row = stock_row(admin, "CAP")
    await row.get_by_role("button", name="Adjust").click()
    dialog = admin.locator("#adjust-dialog")
    await dialog.get_by_label("Change (+/−)").fill("+5")
    await dialog.get_by_label("Reason").fill("delivery received")
    await dialog.get_by_role("button", name="Apply").click()
    await expect(dialog).to_be_hidden()
    await expect(row.locator('[data-field="on_hand"]')).to_have_text("15")

    await row.get_by_role("button", name="Adjust").click()
    await dialog.get_by_label("Change (+/−)").fill("−3")
    await dialog.get_by_label("Reason").fill("damaged")
    await dialog.get_by_role("button", name="Apply").click()
    await expect(row.locator('[data-field="on_hand"]')).to_have_text("12")
    ledger = [(m["reason"], m["delta"]) for m in await shop.movements("CAP")]
    assert ledger == [("damaged", -3), ("delivery received", 5), ("created", 10)]


@SQLITE_ONLY
async def test_bad_stock_input_shows_an_error_and_writes_nothing(admin: Page, shop: Shop) -> None:
    await shop.set_stock("BAG", 10)
    await shop.reserve("holds-four", {"BAG": 4})
    await admin.goto(f"{shop.url}/admin")
    row = stock_row(admin, "BAG")

    await row.get_by_role("button", name="Adjust").click()
    adjust = admin.locator("#adjust-dialog")
    error = adjust.locator('[data-slot="error"]')
    for delta, reason, message in (
        ("lots", "count", "Change: must be a whole number."),
        ("0", "count", "Change: must not be zero."),
        ("-7", "count", "below the 4 units held by open reservations"),
        ("99999999999999999999", "count", "Change: must be a whole number."),
    ):
        await adjust.get_by_label("Change (+/−)").fill(delta)
        await adjust.get_by_label("Reason").fill(reason)
        await adjust.get_by_role("button", name="Apply").click()
        await expect(error).to_contain_text(message)
        await expect(adjust).to_be_visible()
    await adjust.get_by_role("button", name="Cancel").click()

    await row.get_by_role("button", name="Edit stock").click()
    edit = admin.locator("#edit-dialog")
    for value, message in (("ten", "On hand: must be a whole number."), ("3", "below the 4")):
        await edit.get_by_label("New on hand").fill(value)
        await edit.get_by_role("button", name="Save").click()
        await expect(edit.locator('[data-slot="error"]')).to_contain_text(message)

    stock = await shop.stock("BAG")
    assert (stock["on_hand"], stock["reserved"]) == (10, 4)
    assert [m["reason"] for m in await shop.movements("BAG")] == ["created"]
