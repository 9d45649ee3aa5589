"""Query parameters the admin pages cannot use are reported or ignored, on every backend.

Numbers past what the database holds (a cursor of 2**63), digits ``int()`` refuses
(``²`` is a digit to ``str.isdigit``) and NUL (PostgreSQL refuses it in text) must give a
page with a message, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from .support import ADMIN_TOKEN, Shop

pytestmark = pytest.mark.asyncio

DRIVER_TEXT = ("[SQL:", "[parameters:", "sqlalche.me", "Traceback")

OVERVIEW_PARAMETERS = (
    "cursor=%C2%B2",  # ²
    "cursor=%D9%A3",  # ٣, an Arabic-Indic digit
    "cursor=9223372036854775808",
    "cursor=9999999999999999999",
    "cursor=99999999999999999999999",
    "cursor=-1",
    "cursor=%00",
    "q=%00",
    "q=a%00b",
    "order_id=%00",
    "order_id=o%0Ab",
    "sku=%00",
    "status=held&q=%00&order_id=%00&cursor=%C2%B2",
)
SKU_PAGE_CURSORS = ("%C2%B2", "9223372036854775808", "9999999999999999999", "%00", "1.5")


@pytest.fixture
async def signed_in(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shop.url, timeout=30.0) as client:
        answer = await client.post("/admin/sign-in", data={"token": ADMIN_TOKEN})
        assert answer.status_code == 303, answer.text
        yield client


def assert_page(answer: httpx.Response, status: int, what: str) -> None:
    assert answer.status_code == status, (what, answer.status_code, answer.text[:300])
    assert "text/html" in answer.headers["content-type"], what
    leaked = [marker for marker in DRIVER_TEXT if marker in answer.text]
    assert not leaked, (what, leaked)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_unusable_overview_parameters_give_the_page_with_a_notice(
    shop: Shop, signed_in: httpx.AsyncClient
) -> None:
    await shop.set_stock("SAFE", 3)
    await shop.reserve("order-1", {"SAFE": 1})
    for query in OVERVIEW_PARAMETERS:
        answer = await signed_in.get(f"/admin?{query}")
        assert_page(answer, 200, query)
        assert "SAFE" in answer.text, (query, "the page still lists the stock")
        assert re.search(r"order-1", answer.text), (query, "and the reservations, unfiltered")


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_unusable_ledger_cursors_give_a_clear_error_page(
    shop: Shop, signed_in: httpx.AsyncClient
) -> None:
    await shop.set_stock("SAFE", 3)
    for cursor in SKU_PAGE_CURSORS:
        answer = await signed_in.get(f"/admin/sku?sku=SAFE&cursor={cursor}")
        assert_page(answer, 422, cursor)
        assert "cursor" in answer.text.lower(), (cursor, "the page names what is wrong")
    assert_page(await signed_in.get("/admin/sku?sku=SAFE"), 200, "the first page")
