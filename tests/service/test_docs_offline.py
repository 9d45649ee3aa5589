"""``/docs`` and ``/redoc`` work with no network but the server: the real ``serve`` and
the machine's Chromium, every request to another host aborted (and recorded, so a page
that even tries one fails the test)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, Route, expect

from .support import Served

Serve = Callable[..., AbstractContextManager[Served]]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


async def offline_page(browser: Browser) -> tuple[Page, list[str], list[str]]:
    """A page whose requests to any other host are aborted; those it tried, and the
    script errors it met."""
    context = await browser.new_context()
    page = await context.new_page()
    blocked: list[str] = []
    errors: list[str] = []

    async def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_local)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, blocked, errors


async def test_swagger_ui_and_redoc_render_offline(
    serve: Serve, browser: Browser, tmp_path: Path
) -> None:
    with serve("--db", f"sqlite:///{tmp_path}/docs.db") as served:
        page, blocked, errors = await offline_page(browser)

        await page.goto(f"{served.url}/docs")
        await expect(page.locator(".swagger-ui .information-container .title")).to_contain_text(
            "stockguard"
        )
        reserve = page.locator(".opblock-summary-path", has_text="/v1/reservations").first
        await expect(reserve).to_be_visible()

        await page.goto(f"{served.url}/redoc")
        await expect(page.locator("h1").first).to_contain_text("stockguard")
        await expect(page.get_by_text("/v1/reservations").first).to_be_attached()

        assert blocked == []
        assert errors == []
