"""Stock per location on the admin page, in Chromium against a real ``stockguard serve``
(docs/locations.md): the SKU page's table per location and its on-hand edit with the
"changed while you were editing" dialog, the locations page, and hostile posts to both.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from .conftest import SQLITE_ONLY
from .support import ADMIN_TOKEN, Shop

pytestmark = [pytest.mark.asyncio, SQLITE_ONLY]


async def add_location(shop: Shop, code: str, priority: int = 10) -> None:
    answer = await shop.client.post(
        "/v1/locations",
        json={"code": code, "name": f"{code} shop", "priority": priority},
        headers=shop.admin,
    )
    assert answer.status_code == 201, answer.text


async def stock_at(shop: Shop, sku: str, code: str, on_hand: int) -> dict[str, Any]:
    answer = await shop.client.put(
        f"/v1/stock/{sku}/locations/{code}", json={"on_hand": on_hand}, headers=shop.admin
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def level(stock: dict[str, Any], code: str) -> dict[str, Any]:
    return next(at for at in stock["locations"] if at["location"] == code)


def location_row(page: Page, code: str) -> Any:
    return page.locator(f'tr[data-location-sku][data-location="{code}"]')


async def test_the_sku_page_shows_and_edits_stock_per_location(admin: Page, shop: Shop) -> None:
    await add_location(shop, "store-1")
    await stock_at(shop, "MUG", "default", 6)
    await stock_at(shop, "MUG", "store-1", 4)
    held = await shop.client.post(
        "/v1/reservations",
        json={"order_id": "c-1", "items": [{"sku": "MUG", "quantity": 1, "location": "store-1"}]},
    )
    assert held.status_code == 201, held.text

    await admin.goto(f"{shop.url}/admin/sku?sku=MUG")
    table = admin.locator("#location-table")
    await expect(table).to_contain_text("Safety stock")
    await expect(table).to_contain_text("Allowance")
    store = location_row(admin, "store-1")
    await expect(store.locator('[data-field="on_hand"]')).to_have_text("4")
    await expect(store.locator('[data-field="reserved"]')).to_have_text("1")
    await expect(store.locator('[data-field="available"]')).to_have_text("3")
    await expect(location_row(admin, "default").locator('[data-field="on_hand"]')).to_have_text("6")

    # The admin opens the store's edit at 4; meanwhile another admin counts 5 there.
    await store.get_by_role("button", name="Edit on hand").click()
    edit = admin.locator("#edit-dialog")
    await expect(edit).to_contain_text("MUG at store-1")
    await expect(edit.get_by_label("New on hand")).to_have_value("4")
    await edit.get_by_label("New on hand").fill("8")
    await shop.client.put(
        "/v1/stock/MUG/locations/store-1",
        json={"on_hand": 5, "expected_on_hand": 4},
        headers=shop.admin,
    )
    await edit.get_by_role("button", name="Save").click()

    conflict = admin.locator("#conflict-dialog")
    await expect(conflict).to_be_visible()
    await expect(conflict).to_contain_text("Stock changed while you were editing")
    await expect(conflict).to_contain_text("MUG at store-1")
    await expect(conflict.locator('[data-slot="was_on_hand"]')).to_have_text("4")
    await expect(conflict.locator('[data-slot="now_on_hand"]')).to_have_text("5")
    await expect(conflict.locator('[data-slot="now_available"]')).to_have_text("4")
    assert level(await shop.stock("MUG"), "store-1")["on_hand"] == 5, "never overwritten"

    await conflict.get_by_role("button", name="Re-apply 8").click()
    await expect(conflict).to_be_hidden()
    await expect(store.locator('[data-field="on_hand"]')).to_have_text("8")
    await expect(admin.locator("#toast")).to_contain_text("MUG at store-1: on hand 5 → 8")
    stock = await shop.stock("MUG")
    assert level(stock, "store-1")["on_hand"] == 8
    assert level(stock, "default")["on_hand"] == 6
    assert stock["on_hand"] == 14
    await expect(admin.locator('tr[data-sku="MUG"] [data-field="on_hand"]')).to_have_text("14")


async def test_a_sku_is_stocked_at_a_new_location_from_its_page(admin: Page, shop: Shop) -> None:
    await add_location(shop, "store-2")
    await shop.set_stock("CUP", 3)

    await admin.goto(f"{shop.url}/admin/sku?sku=CUP")
    await expect(location_row(admin, "store-2")).to_have_count(0)
    await admin.locator("#location-add-code").select_option("store-2")
    await admin.get_by_role("button", name="Set on hand there").click()
    edit = admin.locator("#edit-dialog")
    await edit.get_by_label("New on hand").fill("7")
    await edit.get_by_role("button", name="Save").click()

    await expect(location_row(admin, "store-2").locator('[data-field="on_hand"]')).to_have_text("7")
    assert (await shop.stock("CUP"))["on_hand"] == 10


async def test_the_locations_page_creates_renames_and_deactivates(admin: Page, shop: Shop) -> None:
    await admin.goto(f"{shop.url}/admin/locations")
    rows = admin.locator("#locations tbody tr")
    await expect(rows).to_have_count(1)
    await expect(admin.locator('tr[data-location="default"]')).to_contain_text("always sells")

    await admin.get_by_text("New location").click()
    await admin.get_by_label("Code").fill("store-1")
    await admin.get_by_label("Name", exact=True).fill("High Street")
    await admin.get_by_label("Priority (0 first)").fill("5")
    await admin.get_by_role("button", name="Create location").click()
    await expect(admin.locator("#flash")).to_contain_text("Location store-1 (High Street) created")
    await expect(rows).to_have_count(2)

    # A code taken is refused on the page, as typed.
    await admin.get_by_text("New location").click()
    await admin.get_by_label("Code").fill("store-1")
    await admin.get_by_label("Name", exact=True).fill("Again")
    await admin.get_by_role("button", name="Create location").click()
    await expect(admin.locator("#location-error")).to_contain_text("already exists")

    await admin.goto(f"{shop.url}/admin/locations")
    store = admin.locator('tr[data-location="store-1"]')
    await store.get_by_label("Name of store-1").fill("Market Square")
    await store.get_by_label("Priority of store-1").fill("2")
    await store.get_by_role("button", name="Save").click()
    await expect(admin.locator("#flash")).to_contain_text("Market Square, priority 2")

    await store.get_by_role("button", name="Deactivate").click()
    await expect(admin.locator("#flash")).to_contain_text("deactivated")
    await expect(store.locator('[data-field="state"]')).to_have_text("Inactive")
    listed = (await shop.client.get("/v1/locations")).json()
    assert listed[1] == {"code": "store-1", "name": "Market Square", "priority": 2, "active": False}

    await store.get_by_role("button", name="Reactivate").click()
    await expect(store.locator('[data-field="state"]')).to_have_text("Active")
    assert (await shop.client.get("/v1/locations")).json()[1]["active"] is True


@pytest.fixture
async def signed_in(shop: Shop) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with httpx.AsyncClient(base_url=shop.url, timeout=10.0) as client:
        answer = await client.post("/admin/sign-in", data={"token": ADMIN_TOKEN})
        assert answer.status_code == 303, answer.text
        page = await client.get("/admin")
        found = re.search(r'data-csrf-token="([^"]+)"', page.text)
        assert found
        yield client, found.group(1)


async def test_hostile_location_posts_are_refused_and_never_500(
    shop: Shop, signed_in: tuple[httpx.AsyncClient, str]
) -> None:
    client, csrf = signed_in
    await add_location(shop, "store-1")
    await stock_at(shop, "SAFE", "store-1", 10)
    token = {"X-CSRF-Token": csrf}
    set_at = "/admin/api/stock/set"
    for path, body, status in (
        (set_at, {"sku": "SAFE", "location": "store-1", "on_hand": "5"}, 422),
        (
            set_at,
            {"sku": "SAFE", "location": "store-1", "on_hand": "5", "expected_on_hand": "9"},
            409,
        ),
        (
            set_at,
            {"sku": "SAFE", "location": "nowhere", "on_hand": "5", "expected_on_hand": "0"},
            404,
        ),
        (
            set_at,
            {"sku": "SAFE", "location": "a\x00b", "on_hand": "5", "expected_on_hand": "0"},
            422,
        ),
        (
            set_at,
            {"sku": "SAFE", "location": "x" * 65, "on_hand": "5", "expected_on_hand": "0"},
            422,
        ),
        (
            set_at,
            {"sku": "SAFE", "location": "x" * 5_000, "on_hand": "5", "expected_on_hand": "0"},
            422,
        ),
        (
            set_at,
            {"sku": "SAFE", "location": "store-1", "on_hand": "-1", "expected_on_hand": "10"},
            422,
        ),
        (
            set_at,
            {"sku": "SAFE", "location": "store-1", "on_hand": "9" * 16, "expected_on_hand": "10"},
            422,
        ),
        ("/admin/locations", {"code": "", "name": "X"}, 422),
        ("/admin/locations", {"code": "store-1", "name": "X"}, 409),
        ("/admin/locations", {"code": "s2", "name": ""}, 422),
        ("/admin/locations", {"code": "s2", "name": "n" * 201}, 422),
        ("/admin/locations", {"code": "s2", "name": "X", "priority": "-1"}, 422),
        ("/admin/locations", {"code": "s2", "name": "X", "priority": "1e3"}, 422),
        ("/admin/locations", {"code": "s\u202e2", "name": "X"}, 422),
        ("/admin/locations/update", {"code": "default", "active": "false"}, 422),
        ("/admin/locations/update", {"code": "nowhere", "name": "X"}, 404),
        ("/admin/locations/update", {"code": "store-1", "active": "maybe"}, 422),
        ("/admin/locations/update", {"code": "store-1", "priority": "9999999999"}, 422),
        ("/admin/locations/update", {"code": "store-1", "name": ""}, 422),
        ("/admin/locations/update", {"code": "", "name": "X"}, 422),
    ):
        answer = await client.post(path, data=body, headers=token)
        assert answer.status_code == status, (path, body, answer.status_code, answer.text[:300])
    no_csrf = await client.post("/admin/locations", data={"code": "s3", "name": "X"})
    assert no_csrf.status_code == 403
    stock = await shop.stock("SAFE")
    assert level(stock, "store-1")["on_hand"] == 10
    codes = [location["code"] for location in (await shop.client.get("/v1/locations")).json()]
    assert codes == ["default", "store-1"]
