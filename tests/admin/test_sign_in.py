"""Sign-in to the admin page: the token opens a session cookie; nothing works without it.

Every request here goes to a real ``stockguard serve`` from Chromium or from the
browser context's own request client (which shares the context's cookies), so cookie
flags, redirects and refusals are the ones a browser really sees.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from .conftest import SQLITE_ONLY
from .support import Shop, screenshot, sign_in

pytestmark = [pytest.mark.asyncio, SQLITE_ONLY]


async def test_the_admin_page_needs_a_sign_in(page: Page, shop: Shop, backend: str) -> None:
    await page.goto(f"{shop.url}/admin")
    await expect(page).to_have_url(f"{shop.url}/admin/sign-in")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_label("Admin token")).to_be_visible()
    await screenshot(page, backend, "admin-sign-in")

    for path in ("/admin/sku?sku=X", "/admin/"):
        await page.goto(f"{shop.url}{path}")
        await expect(page).to_have_url(f"{shop.url}/admin/sign-in")
    live = await page.request.get(f"{shop.url}/admin/api/stock?sku=X")
    assert live.status == 401
    assert (await live.json())["kind"] == "signed-out"


async def test_a_bad_token_is_refused_and_opens_no_session(page: Page, shop: Shop) -> None:
    for wrong in ("wrong-token", "admin-page-test-token ", "ä" * 50):
        await sign_in(page, shop, token=wrong)
        await expect(page.locator("#sign-in-error")).to_have_text("That is not the admin token.")
        assert [c for c in await page.context.cookies() if c["name"] == "stockguard_admin"] == []
    await page.goto(f"{shop.url}/admin")
    await expect(page).to_have_url(f"{shop.url}/admin/sign-in")


async def test_the_session_cookie_is_http_only_strict_and_scoped_to_admin(
    admin: Page, shop: Shop
) -> None:
    (cookie,) = [c for c in await admin.context.cookies() if c["name"] == "stockguard_admin"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/admin"
    assert cookie["secure"] is False, "served over plain http here; Secure is set on https"
    assert await admin.evaluate("document.cookie") == "", "scripts cannot read the session"


async def test_a_forged_or_tampered_cookie_is_not_a_session(admin: Page, shop: Shop) -> None:
    (cookie,) = [c for c in await admin.context.cookies() if c["name"] == "stockguard_admin"]
    expires, csrf, signature = cookie["value"].split(".")
    for forged in (
        f"{int(expires) + 3600}.{csrf}.{signature}",  # extended
        f"{expires}.{csrf}.{signature[:-2]}AA",  # signature changed
        f"{expires}.{csrf}",  # unsigned
    ):
        await admin.context.clear_cookies()
        await admin.context.add_cookies([{**cookie, "value": forged}])
        await admin.goto(f"{shop.url}/admin")
        await expect(admin).to_have_url(f"{shop.url}/admin/sign-in")


async def test_writes_without_the_csrf_token_or_from_another_origin_are_refused(
    admin: Page, shop: Shop
) -> None:
    """The context's request client carries the session cookie but not the page's token."""
    await shop.set_stock("CSRF-1", 10)
    csrf = await admin.locator("body").get_attribute("data-csrf-token")
    assert csrf
    form = {"sku": "CSRF-1", "on_hand": "99", "expected_on_hand": "10"}
    url = f"{shop.url}/admin/api/stock/set"
    for headers in (
        {},
        {"X-CSRF-Token": "not-the-token"},
        {"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    ):
        answer = await admin.request.post(url, form=form, headers=headers)
        assert answer.status == 403, headers
        assert (await answer.json())["kind"] == "csrf"
    product = await admin.request.post(
        f"{shop.url}/admin/products", form={"name": "Forged", "initial_on_hand": "1"}
    )
    assert product.status == 403
    assert (await shop.stock("CSRF-1"))["on_hand"] == 10
    assert (await shop.client.get("/v1/stock/FORGED")).status_code == 404

    allowed = await admin.request.post(url, form=form, headers={"X-CSRF-Token": csrf})
    assert allowed.status == 200
    assert (await shop.stock("CSRF-1"))["on_hand"] == 99


async def test_signing_out_ends_the_session(admin: Page, shop: Shop) -> None:
    await admin.get_by_role("button", name="Sign out").click()
    await expect(admin).to_have_url(f"{shop.url}/admin/sign-in")
    await expect(admin.locator("#flash")).to_have_text("Signed out.")
    await admin.goto(f"{shop.url}/admin")
    await expect(admin).to_have_url(f"{shop.url}/admin/sign-in")
