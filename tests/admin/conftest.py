"""Fixtures of the admin page's browser tests: Chromium, a served shop, a page.

One headless Chromium (the machine's ``/usr/bin/chromium``, never a downloaded one) for
the whole session; each test gets a fresh browser context (no cookies) and its own
``stockguard serve`` on the test's database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Error, Page, async_playwright, expect

from .support import VIEWPORT, Shop, served_shop, sign_in

CHROMIUM = os.environ.get("STOCKGUARD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
"""Most page tests exercise the page, not the database: one backend is enough for them."""


def _chromium_installed() -> bool:
    return Path(CHROMIUM).exists()


def _unavailable(message: str) -> None:
    if os.environ.get("STOCKGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (STOCKGUARD_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not _chromium_installed():
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
        except Error as error:
            _unavailable(f"Chromium at {CHROMIUM} does not start: {error}")
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh context: no cookies, a fixed viewport for stable screenshots."""
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def shop(db_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with served_shop(db_url, tmp_path / "serve") as served:
        yield served


@pytest.fixture
async def admin(page: Page, shop: Shop) -> Page:
    """A page signed in to the admin, on the overview."""
    await sign_in(page, shop)
    await expect(page.get_by_role("heading", name="Stock", exact=True)).to_be_visible()
    return page
