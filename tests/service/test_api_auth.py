"""Bearer tokens (docs/design.md#auth): admin routes always, API routes when an API token is set."""

from __future__ import annotations

import pytest

from .support import ADMIN_TOKEN, API_TOKEN, AppFactory, assert_problem, bearer

pytestmark = pytest.mark.asyncio

API_ROUTES = [
    ("POST", "/v1/reservations", {"order_id": "o", "items": [{"sku": "A", "quantity": 1}]}),
    ("GET", "/v1/reservations/some-id", None),
    ("POST", "/v1/reservations/some-id/confirm", None),
    ("POST", "/v1/reservations/some-id/release", None),
    ("GET", "/v1/stock/A", None),
    ("GET", "/v1/stock?sku=A", None),
    ("GET", "/v1/products/some-id", None),
]
ADMIN_ROUTES = [
    ("GET", "/v1/reservations", None),
    ("PUT", "/v1/stock/A", {"on_hand": 1}),
    ("POST", "/v1/stock/A/adjustments", {"delta": 1, "reason": "x"}),
    ("GET", "/v1/stock/A/movements", None),
    ("POST", "/v1/products", {"name": "Tee"}),
]


async def test_with_an_api_token_set_api_routes_refuse_a_missing_or_wrong_token(
    make_api: AppFactory,
) -> None:
    async with make_api(api_token=API_TOKEN) as api:
        await api.set_stock("A", 5)
        for method, path, body in API_ROUTES:
            missing = await api.client.request(method, path, json=body)
            wrong = await api.client.request(method, path, json=body, headers=bearer("guess"))
            assert_problem(missing, 401, "unauthorized")
            assert missing.headers["www-authenticate"] == "Bearer"
            assert_problem(wrong, 401, "unauthorized")
            assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert (await api.reservation_count()) == 0


async def test_with_an_api_token_set_the_api_and_the_admin_token_both_open_api_routes(
    make_api: AppFactory,
) -> None:
    async with make_api(api_token=API_TOKEN) as api:
        await api.set_stock("A", 5)
        for n, token in enumerate((API_TOKEN, ADMIN_TOKEN)):
            held = await api.client.post(
                "/v1/reservations",
                json={"order_id": f"o{n}", "items": [{"sku": "A", "quantity": 1}]},
                headers=bearer(token),
            )
            read = await api.client.get("/v1/stock/A", headers=bearer(token))
            assert held.status_code == 201, held.text
            assert read.status_code == 200


async def test_without_an_api_token_set_api_routes_are_open(make_api: AppFactory) -> None:
    async with make_api(api_token=None) as api:
        await api.set_stock("A", 5)
        assert (await api.client.get("/v1/stock/A")).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_refuse_no_token_a_wrong_one_and_the_api_token(
    make_api: AppFactory, method: str, path: str, body: dict[str, object] | None
) -> None:
    async with make_api(api_token=API_TOKEN) as api:
        await api.set_stock("A", 5)
        missing = await api.client.request(method, path, json=body)
        wrong = await api.client.request(method, path, json=body, headers=bearer("x" * 40))
        basic = await api.client.request(
            method, path, json=body, headers={"Authorization": f"Basic {ADMIN_TOKEN}"}
        )
        api_token = await api.client.request(method, path, json=body, headers=bearer(API_TOKEN))
        assert_problem(missing, 401, "unauthorized")
        assert_problem(wrong, 401, "unauthorized")
        assert_problem(basic, 401, "unauthorized")
        assert_problem(api_token, 403, "forbidden")
        assert (await api.stock("A"))["on_hand"] == 5


async def test_without_an_admin_token_configured_admin_routes_stay_locked(
    make_api: AppFactory,
) -> None:
    async with make_api(admin_token=None) as api:
        answer = await api.client.put(
            "/v1/stock/A", json={"on_hand": 1}, headers=bearer(ADMIN_TOKEN)
        )
        assert_problem(answer, 401, "unauthorized")
        assert_problem(await api.client.get("/v1/stock/A"), 404, "unknown-sku")


async def test_the_openapi_document_declares_the_tokens_where_they_are_needed(
    make_api: AppFactory,
) -> None:
    async with make_api(api_token=None) as open_api, make_api(api_token=API_TOKEN) as locked:
        open_doc = (await open_api.client.get("/openapi.json")).json()
        locked_doc = (await locked.client.get("/openapi.json")).json()

    reserve_open = open_doc["paths"]["/v1/reservations"]["post"]
    reserve_locked = locked_doc["paths"]["/v1/reservations"]["post"]
    put_stock = open_doc["paths"]["/v1/stock/{sku}"]["put"]
    assert "security" not in reserve_open and "401" not in reserve_open["responses"]
    assert reserve_locked["security"] == [{"ApiToken": []}]
    assert "401" in reserve_locked["responses"]
    assert put_stock["security"] == [{"AdminToken": []}]
    assert {"401", "403"} <= set(put_stock["responses"])
