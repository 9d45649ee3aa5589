"""Fixtures of the admin page's browser tests: a served shop, a page.

The session's headless Chromium is ``browser`` (tests/conftest.py); each test gets a
fresh browser context (no cookies) and its own ``stockguard serve`` on the test's
database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from .support import VIEWPORT, Shop, served_shop, sign_in

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
"""Most page tests exercise the page, not the database: one backend is enough for them."""


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
