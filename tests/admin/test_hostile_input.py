"""Hostile or broken requests to the admin routes: a clear refusal, nothing written, no 500.

These go straight to a real ``stockguard serve`` with httpx (a signed-in cookie jar and
the page's CSRF token), bypassing the page's own checks, the way a script or a broken
browser extension would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from .conftest import SQLITE_ONLY
from .support import ADMIN_TOKEN, Shop

pytestmark = [pytest.mark.asyncio, SQLITE_ONLY]


@pytest.fixture
async def signed_in(shop: Shop) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with httpx.AsyncClient(base_url=shop.url, timeout=10.0) as client:
        answer = await client.post("/admin/sign-in", data={"token": ADMIN_TOKEN})
        assert answer.status_code == 303, answer.text
        page = await client.get("/admin")
        found = re.search(r'data-csrf-token="([^"]+)"', page.text)
        assert found
        yield client, found.group(1)


async def test_pages_with_bad_parameters_answer_a_page_not_a_500(
    signed_in: tuple[httpx.AsyncClient, str],
) -> None:
    client, _ = signed_in
    for path, status in (
        ("/admin?q=" + "x" * 10_000, 200),
        ("/admin?q=%25%5F%00", 200),
        ("/admin?status=nope&sku=" + "s" * 100 + "&order_id=" + "o" * 500, 200),
        ("/admin?cursor=-1", 200),
        ("/admin?cursor=99999999999999999999999", 200),
        ("/admin/sku", 422),
        ("/admin/sku?sku=%00", 422),
        ("/admin/sku?sku=" + "s" * 65, 422),
        ("/admin/sku?sku=NOPE", 404),
        ("/admin/sku?sku=NOPE&cursor=x", 404),
        ("/admin/static/../app.py", 404),
        ("/admin/static/admin.py", 404),
        ("/admin/api/stock?" + "&".join(f"sku=S{n}" for n in range(101)), 422),
        ("/admin/api/stock?sku=", 422),
    ):
        answer = await client.get(path)
        assert answer.status_code == status, (path, answer.status_code, answer.text[:300])


async def test_broken_writes_are_refused_and_write_nothing(
    shop: Shop, signed_in: tuple[httpx.AsyncClient, str]
) -> None:
    client, csrf = signed_in
    await shop.set_stock("SAFE", 10)
    token = {"X-CSRF-Token": csrf}
    for path, body, status in (
        ("/admin/api/stock/set", {"sku": "SAFE", "on_hand": "5"}, 422),
        ("/admin/api/stock/set", {"sku": "SAFE", "on_hand": "1e3", "expected_on_hand": "10"}, 422),
        ("/admin/api/stock/set", {"sku": "SAFE", "on_hand": "5", "expected_on_hand": "9"}, 409),
        ("/admin/api/stock/set", {"sku": "NOPE", "on_hand": "5", "expected_on_hand": "0"}, 404),
        ("/admin/api/stock/set", {"sku": "", "on_hand": "5", "expected_on_hand": "10"}, 422),
        (
            "/admin/api/stock/set",
            {"sku": "SAFE", "on_hand": "9" * 16, "expected_on_hand": "10"},
            422,
        ),
        ("/admin/api/stock/adjust", {"sku": "SAFE", "delta": "-11", "reason": "x"}, 409),
        ("/admin/api/stock/adjust", {"sku": "SAFE", "delta": "1", "reason": ""}, 422),
        ("/admin/api/stock/adjust", {"sku": "SAFE", "delta": "1", "reason": "r" * 201}, 422),
        ("/admin/api/stock/adjust", {"sku": "SAFE", "delta": "1", "reason": "a\x00b"}, 422),
        ("/admin/api/stock/adjust", {"sku": "SAFE", "delta": "1", "reason": "x" * 5_000}, 422),
    ):
        answer = await client.post(path, data=body, headers=token)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["ok"] is False
    many_fields = {f"field{n}": "x" for n in range(200)}
    answer = await client.post("/admin/api/stock/adjust", data=many_fields, headers=token)
    assert answer.status_code == 400
    answer = await client.post(
        "/admin/api/stock/set", content=b"\xff\xfe not a form", headers=token
    )
    assert answer.status_code == 422
    stock = await shop.stock("SAFE")
    assert (stock["on_hand"], stock["version"]) == (10, 0)
    assert len(await shop.movements("SAFE")) == 1


async def test_broken_page_forms_are_refused_with_a_page(
    shop: Shop, signed_in: tuple[httpx.AsyncClient, str]
) -> None:
    client, csrf = signed_in
    for path, body, status in (
        ("/admin/products", {"csrf_token": csrf, "name": "X", "axis_name": "size"}, 422),
        ("/admin/products", {"csrf_token": csrf, "name": "X" * 201}, 422),
        ("/admin/products", {"csrf_token": csrf, "name": "Y", "initial_on_hand": "1" * 14}, 422),
        (
            "/admin/products",
            {"csrf_token": csrf, "name": "Z", "axis_name": ["a"] * 9, "axis_values": ["1"] * 9},
            422,
        ),
    ):
        answer = await client.post(path, data=body)
        assert answer.status_code == status, (body, answer.text[:300])
        assert "text/html" in answer.headers["content-type"]
    assert (await shop.client.get("/v1/stock", params={"sku": ["X", "Y", "Z"]})).json() == []

    answer = await client.post(
        "/admin/reservations/release",
        data={
            "csrf_token": csrf,
            "reservation_id": "no-such-id",
            "return_to": "https://evil.example/",
        },
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin", "never redirected off the admin page"


async def test_names_are_shown_as_text_never_run_as_markup(
    shop: Shop, signed_in: tuple[httpx.AsyncClient, str]
) -> None:
    client, _ = signed_in
    await shop.create_product("<img src=x onerror=alert(1)>", initial_on_hand=1)
    page = await client.get("/admin")
    assert "<img src=x" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


async def test_broken_policy_forms_are_refused_with_a_page_and_write_nothing(
    shop: Shop, signed_in: tuple[httpx.AsyncClient, str]
) -> None:
    """The stock policy form (admin.sku, docs/design.md#stock-policy) as a script would
    post it: every malformed, missing, oversized or stale field is a page saying why
    (422, 409, 404, 403 or 400), never a 500, and the policy stays as it was."""
    client, csrf = signed_in
    await shop.set_stock("SAFE", 10)
    await shop.set_policy("SAFE", safety_stock=1)
    stored = {
        "safety_stock": 1,
        "backorder_max": 0,
        "customer_max": None,
        "low_stock_threshold": None,
    }
    shown = {
        "expected_safety_stock": "1",
        "expected_backorder_max": "0",
        "expected_customer_max": "",
        "expected_low_stock_threshold": "",
    }
    good = {
        "csrf_token": csrf,
        "sku": "SAFE",
        "safety_stock": "2",
        "backorder_max": "0",
        "customer_max": "",
        "low_stock_threshold": "",
        **shown,
    }
    for changes, status in (
        ({"csrf_token": ""}, 403),
        ({"csrf_token": "forged"}, 403),
        ({"sku": ""}, 422),
        ({"sku": "a\x00b"}, 422),
        ({"sku": "s" * 65}, 422),
        ({"sku": "NOPE"}, 404),
        ({"sku": "<script>alert(1)</script>"}, 404),
        ({"expected_safety_stock": ""}, 422),  # never an unconditional write from a form
        ({"expected_backorder_max": "zero"}, 422),
        ({"expected_customer_max": "1" * 5_000}, 422),
        ({"expected_safety_stock": "0"}, 409),
        ({"expected_customer_max": "9" * 16}, 409),
        ({"expected_low_stock_threshold": "-3"}, 409),
        ({"safety_stock": ""}, 422),
        ({"safety_stock": "1e3"}, 422),
        ({"safety_stock": "-5"}, 422),
        ({"safety_stock": "9" * 16}, 422),
        ({"safety_stock": "9" * 17}, 422),
        ({"safety_stock": "0x10"}, 422),
        ({"safety_stock": "NaN"}, 422),
        ({"safety_stock": "2\x00"}, 422),
        ({"backorder_max": "10000000000001"}, 422),
        ({"customer_max": "-1"}, 422),
        ({"customer_max": "4294967296000"}, 422),
        ({"low_stock_threshold": "x" * 5_000}, 422),
        ({"low_stock_threshold": "<b>4</b>"}, 422),
    ):
        answer = await client.post("/admin/sku/policy", data={**good, **changes})
        assert answer.status_code == status, (changes, answer.status_code, answer.text[:300])
        assert "text/html" in answer.headers["content-type"]
        assert "<script>alert(1)</script>" not in answer.text
        assert await shop.policy("SAFE") == stored, changes
    many_fields = {f"field{n}": "x" for n in range(200)}
    answer = await client.post("/admin/sku/policy", data={**good, **many_fields})
    assert answer.status_code == 400
    answer = await client.post(
        "/admin/sku/policy",
        content=b"\xff\xfe not a form",
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 422
    answer = await client.post(
        "/admin/sku/policy", data=good, headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert await shop.policy("SAFE") == stored
    stock = await shop.stock("SAFE")
    assert (stock["on_hand"], stock["available"]) == (10, 9)

    answer = await client.post("/admin/sku/policy", data=good)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/sku?sku=SAFE#policy"
    assert (await shop.policy("SAFE"))["safety_stock"] == 2
