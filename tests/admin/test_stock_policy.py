"""The stock policy card of the SKU page, and backorders where an admin looks, in Chromium.

The policy (docs/design.md#stock-policy) is written like a stock edit
(docs/design.md#seed-001): the form carries the policy it showed, and a policy saved by
someone else meanwhile is never overwritten. The other admin here is the HTTP API,
writing between the page's load and its submit. Backorders (docs/design.md#backorders)
show as units owed to buyers on a stock row whose on hand went below 0, the allowance
left, and the backordered units of each reservation item.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Locator, Page, expect

from .conftest import SQLITE_ONLY
from .support import Shop, screenshot, stock_row

pytestmark = pytest.mark.asyncio

NO_POLICY = {
    "safety_stock": 0,
    "backorder_max": 0,
    "customer_max": None,
    "low_stock_threshold": None,
}


async def open_policy_form(admin: Page, shop: Shop, sku: str) -> Locator:
    await admin.goto(f"{shop.url}/admin/sku?sku={sku}")
    await admin.locator("#policy-edit summary").click()
    form = admin.locator("#policy-form")
    await expect(form).to_be_visible()
    return form


async def fill_policy(form: Locator, **values: str) -> None:
    labels = {
        "safety_stock": "Safety stock",
        "backorder_max": "Backorder allowance",
        "customer_max": "Per-customer cap",
        "low_stock_threshold": "Low-stock threshold",
    }
    for name, value in values.items():
        await form.get_by_label(labels[name], exact=True).fill(value)


def figure(admin: Page, name: str) -> Locator:
    return admin.locator(f'#policy-figures [data-policy="{name}"] [data-slot="value"]')


@SQLITE_ONLY
async def test_a_policy_saved_on_the_page_changes_available(admin: Page, shop: Shop) -> None:
    """Safety stock comes off available and the backorder allowance goes on it, as the
    service computes it (docs/design.md#safety-stock, #backorders)."""
    await shop.set_stock("TEE", 10)
    await shop.reserve("holds-two", {"TEE": 2})
    form = await open_policy_form(admin, shop, "TEE")
    row = stock_row(admin, "TEE")
    await expect(row.locator('[data-field="available"]')).to_have_text("8")
    await expect(figure(admin, "safety_stock")).to_have_text("0")
    await expect(figure(admin, "customer_max")).to_have_text("no cap")
    await expect(figure(admin, "low_stock_threshold")).to_have_text("off")
    await expect(row.locator('[data-field="backorder"]')).to_be_hidden()
    await expect(admin.locator("#policy-figures")).to_contain_text("Units on hand never sold")

    await fill_policy(
        form, safety_stock="3", backorder_max="5", customer_max="2", low_stock_threshold="4"
    )
    await form.get_by_role("button", name="Save policy").click()
    await expect(admin.locator("#flash")).to_have_text(
        "TEE: stock policy saved: safety stock 0 → 3, backorder allowance 0 → 5, "
        "per-customer cap no cap → 2, low-stock threshold off → 4."
    )
    await expect(row.locator('[data-field="available"]')).to_have_text("10")  # 10+5-2-3
    await expect(row.locator('[data-field="backorder"]')).to_have_text("backorder 5 of 5 left")
    await expect(admin.locator("#policy-formula")).to_have_text("10 + 5 − 2 − 3 = 10")
    await expect(figure(admin, "customer_max")).to_have_text("2")
    assert await shop.policy("TEE") == {
        "safety_stock": 3,
        "backorder_max": 5,
        "customer_max": 2,
        "low_stock_threshold": 4,
    }
    assert (await shop.stock("TEE"))["available"] == 10

    # Emptying the optional fields takes the cap and the threshold off again.
    await admin.locator("#policy-edit summary").click()
    await fill_policy(form, customer_max="", low_stock_threshold="")
    await form.get_by_role("button", name="Save policy").click()
    await expect(admin.locator("#flash")).to_have_text(
        "TEE: stock policy saved: per-customer cap 2 → no cap, low-stock threshold 4 → off."
    )
    assert await shop.policy("TEE") == {**NO_POLICY, "safety_stock": 3, "backorder_max": 5}


async def test_a_policy_saved_meanwhile_is_never_overwritten(
    admin: Page, shop: Shop, backend: str
) -> None:
    """docs/design.md#seed-001 for the policy: the page opened on no policy, another
    admin set one through the API, the page's save writes nothing and says so, showing
    the policy then, now and the values meant; re-applying is a compare-and-set against
    the policy the warning showed, so a third write meanwhile is caught again."""
    await shop.set_stock("CAP", 20)
    form = await open_policy_form(admin, shop, "CAP")
    await fill_policy(form, safety_stock="4", backorder_max="6")

    await shop.set_policy("CAP", expected=NO_POLICY, safety_stock=1, customer_max=3)
    await form.get_by_role("button", name="Save policy").click()
    warning = admin.locator("#policy-conflict")
    await expect(warning).to_contain_text("Policy changed while you were editing")
    await expect(warning).to_contain_text("Nothing was saved.")
    was, now, yours = (warning.locator(f'tr[data-row="{r}"]') for r in ("was", "now", "yours"))
    await expect(was.locator("td")).to_have_text(["0", "0", "no cap", "off"])
    await expect(now.locator("td")).to_have_text(["1", "0", "3", "off"])
    await expect(yours.locator("td")).to_have_text(["4", "6", "no cap", "off"])
    await expect(form.get_by_label("Safety stock", exact=True)).to_have_value("4")
    await expect(figure(admin, "safety_stock")).to_have_text("1")
    await expect(stock_row(admin, "CAP").locator('[data-field="available"]')).to_have_text("19")
    assert await shop.policy("CAP") == {**NO_POLICY, "safety_stock": 1, "customer_max": 3}
    await screenshot(admin, backend, "admin-policy-changed", full_page=True)

    # The admin keeps the other admin's cap and re-applies on top of the new policy...
    await fill_policy(form, customer_max="3")
    await shop.set_policy(
        "CAP",
        expected={**NO_POLICY, "safety_stock": 1, "customer_max": 3},
        safety_stock=2,
        customer_max=3,
    )
    await form.get_by_role("button", name="Re-apply my values").click()
    # ...but it moved once more: asked again, still nothing written.
    await expect(now.locator("td")).to_have_text(["2", "0", "3", "off"])
    await expect(was.locator("td")).to_have_text(["1", "0", "3", "off"])
    assert await shop.policy("CAP") == {**NO_POLICY, "safety_stock": 2, "customer_max": 3}

    await form.get_by_role("button", name="Re-apply my values").click()
    await expect(admin.locator("#flash")).to_have_text(
        "CAP: stock policy saved: safety stock 2 → 4, backorder allowance 0 → 6."
    )
    await expect(warning).to_have_count(0)
    assert await shop.policy("CAP") == {
        **NO_POLICY,
        "safety_stock": 4,
        "backorder_max": 6,
        "customer_max": 3,
    }
    await expect(stock_row(admin, "CAP").locator('[data-field="available"]')).to_have_text("22")


@SQLITE_ONLY
async def test_keeping_the_current_policy_writes_nothing(admin: Page, shop: Shop) -> None:
    await shop.set_stock("KEEP", 5)
    form = await open_policy_form(admin, shop, "KEEP")
    await fill_policy(form, safety_stock="5")
    await shop.set_policy("KEEP", safety_stock=2)
    await form.get_by_role("button", name="Save policy").click()
    await expect(admin.locator("#policy-conflict")).to_be_visible()
    await admin.get_by_role("link", name="Keep the current policy").click()
    await expect(admin.locator("#policy-conflict")).to_have_count(0)
    await expect(figure(admin, "safety_stock")).to_have_text("2")
    assert await shop.policy("KEEP") == {**NO_POLICY, "safety_stock": 2}


@SQLITE_ONLY
async def test_invalid_values_and_a_cut_below_the_backorders_held_change_nothing(
    admin: Page, shop: Shop
) -> None:
    """422 names the field, 409 below-reserved says what stands in the way; the form
    keeps what was typed, and the policy and stock are as they were."""
    await shop.set_stock("MUG", 2)
    await shop.set_policy("MUG", backorder_max=5)
    held = await shop.reserve("six-mugs", {"MUG": 6})
    assert [item["backordered"] for item in held["items"]] == [4]
    before = await shop.stock("MUG")
    form = await open_policy_form(admin, shop, "MUG")
    error = admin.locator("#policy-error")

    for values, message in (
        ({"backorder_max": "lots"}, "Backorder allowance: must be a whole number."),
        ({"backorder_max": "-1"}, "Backorder allowance: must be 0-1000000000000."),
        ({"backorder_max": "5", "safety_stock": "1e3"}, "Safety stock: must be a whole number."),
        ({"safety_stock": "0", "customer_max": "two"}, "Per-customer cap: must be a whole number."),
        (
            {"customer_max": "", "low_stock_threshold": "1.5"},
            "Low-stock threshold: must be a whole number.",
        ),
        (
            {"low_stock_threshold": "", "backorder_max": "3"},
            "Backorder allowance: cannot go to 3: 4 unit(s) of it are in use "
            "(6 reserved against 2 on hand). Restock, or let those holds end, first.",
        ),
    ):
        await fill_policy(form, **values)
        await form.get_by_role("button", name="Save policy").click()
        await expect(error).to_contain_text(message)
        await expect(admin.locator("#policy-edit")).to_have_attribute("open", "")
        for name, value in values.items():
            field = {
                "backorder_max": "Backorder allowance",
                "safety_stock": "Safety stock",
                "customer_max": "Per-customer cap",
                "low_stock_threshold": "Low-stock threshold",
            }[name]
            await expect(form.get_by_label(field, exact=True)).to_have_value(value)
        assert await shop.policy("MUG") == {**NO_POLICY, "backorder_max": 5}

    assert await shop.stock("MUG") == before
    # The cut down to what is in use is fine.
    await fill_policy(form, backorder_max="4")
    await form.get_by_role("button", name="Save policy").click()
    await expect(admin.locator("#flash")).to_have_text(
        "MUG: stock policy saved: backorder allowance 5 → 4."
    )
    await expect(stock_row(admin, "MUG").locator('[data-field="backorder"]')).to_have_text(
        "backorder 0 of 4 left"
    )


@SQLITE_ONLY
async def test_backordered_units_show_on_reservations_and_owed_units_on_the_stock_row(
    admin: Page, shop: Shop, backend: str
) -> None:
    """A hold beyond the shelf says how many of its units are backordered; confirmed, on
    hand goes below 0 and the open page says how many units are owed to buyers, without a
    reload (the live poll carries it)."""
    await shop.set_stock("HOOD", 2)
    await shop.set_stock("SCARF", 9)
    await shop.set_policy("HOOD", backorder_max=5)
    held = await shop.reserve("three-hoods", {"HOOD": 3, "SCARF": 1})
    assert {i["sku"]: i["backordered"] for i in held["items"]} == {"HOOD": 1, "SCARF": 0}

    await admin.goto(f"{shop.url}/admin")
    reservation = admin.locator(f'tr[data-reservation-id="{held["id"]}"]')
    await expect(reservation.locator('[data-item-sku="HOOD"]')).to_have_text(
        "HOOD × 3 1 backordered"
    )
    await expect(
        reservation.locator('[data-item-sku="SCARF"] [data-field="backordered"]')
    ).to_have_count(0)
    row = stock_row(admin, "HOOD")
    await expect(row.locator('[data-field="backorder"]')).to_have_text("backorder 4 of 5 left")
    await expect(row.locator('[data-field="owed"]')).to_be_hidden()
    await admin.evaluate("window.__notReloaded = true")

    await shop.confirm(held["id"])
    await expect(row.locator('[data-field="on_hand"]')).to_have_text("-1")
    await expect(row.locator('[data-field="owed"]')).to_have_text("1 owed to buyers")
    await expect(row.locator('[data-field="backorder"]')).to_have_text("backorder 4 of 5 left")
    assert await admin.evaluate("window.__notReloaded === true")
    await screenshot(admin, backend, "admin-backorders", full_page=True)

    await admin.goto(f"{shop.url}/admin/sku?sku=HOOD")
    row = stock_row(admin, "HOOD")
    await expect(row.locator('[data-field="owed"]')).to_have_text("1 owed to buyers")
    await expect(row.locator('[data-field="available"]')).to_have_text("4")
