"""Products and SKUs on the admin page: creation with option axes, search, stock marks."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from .conftest import SQLITE_ONLY
from .support import Shop, screenshot, stock_row

pytestmark = pytest.mark.asyncio

TEE_SKUS = [
    f"FESTIVAL-TEE-{size}-{colour}" for size in ("S", "M", "L") for colour in ("RED", "BLUE")
]


async def test_a_product_with_options_creates_every_variant(
    admin: Page, shop: Shop, backend: str
) -> None:
    form = admin.locator("#product-form")
    await admin.get_by_text("New product", exact=True).click()
    await form.get_by_label("Product name").fill("Festival tee")
    await form.get_by_label("On hand per variant").fill("20")
    names = form.get_by_label("Option name")
    values = form.get_by_label("Values, comma-separated")
    await names.nth(0).fill("size")
    await values.nth(0).fill("S, M, L")
    await names.nth(1).fill("colour")
    await values.nth(1).fill("red, blue")
    await expect(admin.locator("#variant-preview")).to_have_text(
        "Creates 6 variants (one SKU each)."
    )
    await screenshot(admin, backend, "admin-new-product")
    await form.get_by_role("button", name="Create product").click()

    await expect(admin.locator("#flash")).to_have_text("Created Festival tee with 6 variants.")
    product = admin.locator("section.product", has_text="Festival tee")
    await expect(product.locator("tr[data-sku]")).to_have_count(6)
    for sku in TEE_SKUS:
        await expect(stock_row(admin, sku).locator('[data-field="on_hand"]')).to_have_text("20")
    await expect(stock_row(admin, "FESTIVAL-TEE-M-BLUE").locator("td.options")).to_have_text(
        "size M · colour blue"
    )
    served = await shop.stocks(TEE_SKUS)
    assert sorted((s["sku"], s["on_hand"]) for s in served) == sorted((s, 20) for s in TEE_SKUS)


@SQLITE_ONLY
async def test_a_product_without_options_is_one_sku(admin: Page, shop: Shop) -> None:
    form = admin.locator("#product-form")
    await admin.get_by_text("New product", exact=True).click()
    await form.get_by_label("Product name").fill("Enamel mug")
    await form.get_by_label("SKU prefix").fill("MUG")
    await form.get_by_label("On hand per variant").fill("7")
    await expect(admin.locator("#variant-preview")).to_have_text("Creates 1 SKU (no options).")
    await form.get_by_role("button", name="Create product").click()
    await expect(admin.locator("#flash")).to_have_text("Created Enamel mug with 1 variant.")
    await expect(stock_row(admin, "MUG").locator('[data-field="on_hand"]')).to_have_text("7")


@SQLITE_ONLY
async def test_a_bad_product_form_shows_why_keeps_the_input_and_writes_nothing(
    admin: Page, shop: Shop
) -> None:
    await shop.create_product("Tote", initial_on_hand=1)  # SKU TOTE exists already
    form = admin.locator("#product-form")
    cases = (
        ("Tee", "S, S", "5", "values must be distinct"),
        ("Tee", "S, M", "many", "Initial on hand: must be a whole number."),
        ("Tee", "S, M", "-1", "Initial on hand: must be between 0 and"),
        ("", "S, M", "5", "Product name: must be 1-200 characters."),
        ("Tote", "", "5", "These SKUs already exist: TOTE."),
    )
    for name, sizes, on_hand, message in cases:
        await admin.goto(f"{shop.url}/admin")
        await admin.get_by_text("New product", exact=True).click()
        await form.get_by_label("Product name").fill(name)
        await form.get_by_label("On hand per variant").fill(on_hand)
        if sizes:
            await form.get_by_label("Option name").nth(0).fill("size")
            await form.get_by_label("Values, comma-separated").nth(0).fill(sizes)
        await form.get_by_label("Product name").evaluate(
            "input => input.removeAttribute('required')"
        )
        await form.get_by_role("button", name="Create product").click()
        await expect(admin.locator("#product-error")).to_contain_text(message)
        await expect(form.get_by_label("Product name")).to_have_value(name)
    await expect(admin.locator("section.product")).to_have_count(1)
    assert (await shop.client.get("/v1/stock", params={"sku": ["TEE-S", "TEE-M"]})).json() == []


@SQLITE_ONLY
async def test_search_finds_products_by_name_or_sku_and_marks_stock(
    admin: Page, shop: Shop, backend: str
) -> None:
    """A catalogue with sold-out and low-stock SKUs, searched, then shown whole."""
    await shop.create_product(
        "Festival tee", {"size": ["S", "M", "L"], "colour": ["red", "blue"]}, initial_on_hand=12
    )
    await shop.create_product("Enamel mug", initial_on_hand=40)
    await shop.set_stock("TOTE-BAG", 3)
    await shop.set_stock("POSTER-A2", 0)
    await shop.reserve("order-1001", {"FESTIVAL-TEE-M-RED": 8}, customer_id="cust-17")
    sold = await shop.reserve("order-1002", {"FESTIVAL-TEE-L-BLUE": 12}, customer_id="cust-23")
    await shop.confirm(sold["id"])
    gone = await shop.reserve("order-1003", {"FESTIVAL-TEE-S-RED": 2, "TOTE-BAG": 1})
    await shop.release(gone["id"])
    await shop.reserve("order-1004", {"FESTIVAL-TEE-S-BLUE": 1, "ENAMEL-MUG": 2})

    await admin.goto(f"{shop.url}/admin?q=blue")
    await expect(admin.locator("section.product h2")).to_have_text(["Festival tee"])
    await admin.goto(f"{shop.url}/admin?q=mug")
    await expect(admin.locator("section.product h2")).to_have_text(["Enamel mug"])
    await admin.goto(f"{shop.url}/admin?q=tote")
    await expect(admin.locator("tr[data-sku]")).to_have_count(1)

    await admin.goto(f"{shop.url}/admin")
    marks = {
        "FESTIVAL-TEE-S-RED": "In stock",
        "FESTIVAL-TEE-M-RED": "Low stock",
        "FESTIVAL-TEE-L-BLUE": "Sold out",
        "TOTE-BAG": "Low stock",
        "POSTER-A2": "Sold out",
        "ENAMEL-MUG": "In stock",
    }
    for sku, mark in marks.items():
        await expect(stock_row(admin, sku).locator('[data-field="state"]')).to_have_text(mark)
    await expect(admin.locator("#count-sold-out")).to_have_text("2")
    await expect(admin.locator("#count-low")).to_have_text("2")
    await expect(admin.locator("#live-status")).to_have_attribute("data-state", "ok")
    await screenshot(admin, backend, "admin-overview", full_page=True)
