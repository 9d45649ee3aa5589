"""POST/GET /v1/products (one, and the listing) over HTTP (docs/design.md#api), on every
backend."""

from __future__ import annotations

import pytest

from .support import ADMIN_TOKEN, API_TOKEN, Api, AppFactory, assert_problem, bearer


async def test_options_without_variants_make_every_size_and_colour_combination(
    api: Api,
) -> None:
    answer = await api.client.post(
        "/v1/products",
        json={
            "name": "Tee",
            "options": {"size": ["S", "M"], "colour": ["red", "blue"]},
            "initial_on_hand": 5,
        },
        headers=api.admin,
    )

    assert answer.status_code == 201, answer.text
    product = answer.json()
    assert product["name"] == "Tee"
    assert product["options"] == {"size": ["S", "M"], "colour": ["red", "blue"]}
    assert sorted((v["options"]["size"], v["options"]["colour"]) for v in product["variants"]) == [
        ("M", "blue"), ("M", "red"), ("S", "blue"), ("S", "red")
    ]  # fmt: skip
    assert {v["sku"] for v in product["variants"]} == {
        "TEE-S-RED", "TEE-S-BLUE", "TEE-M-RED", "TEE-M-BLUE"
    }  # fmt: skip
    assert all(
        (v["on_hand"], v["reserved"], v["available"]) == (5, 0, 5) for v in product["variants"]
    )
    assert (await api.stock("TEE-M-BLUE"))["on_hand"] == 5


async def test_explicit_variants_keep_their_skus_and_stock(api: Api) -> None:
    answer = await api.client.post(
        "/v1/products",
        json={
            "name": "Cap",
            "options": {"size": ["S", "L"]},
            "variants": [
                {"sku": "CAP-SMALL", "options": {"size": "S"}, "on_hand": 3},
                {"sku": "CAP-LARGE", "options": {"size": "L"}, "on_hand": 0},
            ],
        },
        headers=api.admin,
    )

    assert answer.status_code == 201, answer.text
    assert [(v["sku"], v["on_hand"]) for v in answer.json()["variants"]] == [
        ("CAP-SMALL", 3),
        ("CAP-LARGE", 0),
    ]


async def test_a_product_without_options_is_one_sku(api: Api) -> None:
    answer = await api.client.post(
        "/v1/products", json={"name": "Poster", "initial_on_hand": 2}, headers=api.admin
    )

    assert answer.status_code == 201
    assert [(v["sku"], v["options"]) for v in answer.json()["variants"]] == [("POSTER", {})]


async def test_a_product_reusing_an_existing_sku_is_409_and_writes_nothing(api: Api) -> None:
    await api.set_stock("MUG-WHITE", 1)

    answer = await api.client.post(
        "/v1/products",
        json={"name": "Mug", "options": {"colour": ["white", "black"]}},
        headers=api.admin,
    )

    assert assert_problem(answer, 409, "duplicate-sku")["skus"] == ["MUG-WHITE"]
    assert_problem(await api.client.get("/v1/stock/MUG-BLACK"), 404, "unknown-sku")


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "Tee", "options": {"size": []}},
        {"name": "Tee", "options": {"size": ["S", "S"]}},
        {"name": "Tee", "options": {f"axis{n}": ["a"] for n in range(9)}},
        {"name": "Tee", "options": {"size": ["S"]},
         "variants": [{"sku": "T", "options": {"colour": "red"}, "on_hand": 1}]},
        {"name": "Tee", "options": {"size": ["S"]},
         "variants": [{"sku": "T", "options": {"size": "XL"}, "on_hand": 1}]},
        {"name": "Tee", "initial_on_hand": -1},
        {"name": "Tee", "price": 10},
    ],
)  # fmt: skip
async def test_an_invalid_product_is_422_and_writes_nothing(
    api: Api, body: dict[str, object]
) -> None:
    answer = await api.client.post("/v1/products", json=body, headers=api.admin)

    assert_problem(answer, 422, "invalid-input")
    assert_problem(await api.client.get("/v1/stock/TEE"), 404)
    assert_problem(await api.client.get("/v1/stock/T"), 404)


async def test_get_product_shows_live_stock_per_variant(api: Api) -> None:
    created = (
        await api.client.post(
            "/v1/products",
            json={"name": "Tee", "options": {"size": ["S", "M"]}, "initial_on_hand": 4},
            headers=api.admin,
        )
    ).json()
    await api.reserve("order-1", {"TEE-S": 3})

    answer = await api.client.get(f"/v1/products/{created['id']}")

    assert answer.status_code == 200
    assert {v["sku"]: (v["reserved"], v["available"]) for v in answer.json()["variants"]} == {
        "TEE-S": (3, 1),
        "TEE-M": (0, 4),
    }


async def test_an_unknown_product_is_404(api: Api) -> None:
    answer = await api.client.get("/v1/products/00000000-0000-0000-0000-000000000000")

    assert_problem(answer, 404, "product-not-found")


async def _create(api: Api, name: str, **extra: object) -> dict[str, object]:
    answer = await api.client.post("/v1/products", json={"name": name, **extra}, headers=api.admin)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def test_list_products_by_name_with_search_and_limit(api: Api) -> None:
    await _create(api, "Tee", options={"size": ["S", "M"]}, initial_on_hand=3)
    await _create(api, "Mug", initial_on_hand=2)
    await _create(api, "Cap", variants=[{"sku": "HAT-RED", "options": {}, "on_hand": 1}])
    await api.reserve("order-list-1", {"TEE-M": 2})

    answer = await api.client.get("/v1/products")
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert set(page) == {"items", "next_cursor"}
    assert page["next_cursor"] is None  # 3 products, a page of 50
    assert [p["name"] for p in page["items"]] == ["Cap", "Mug", "Tee"]
    tee = page["items"][2]
    assert {v["sku"]: (v["on_hand"], v["reserved"], v["available"]) for v in tee["variants"]} == {
        "TEE-S": (3, 0, 3),
        "TEE-M": (3, 2, 1),
    }  # live stock, as GET /v1/products/{id}

    async def names(**params: object) -> list[str]:
        found = await api.client.get("/v1/products", params=params)
        assert found.status_code == 200, found.text
        return [p["name"] for p in found.json()["items"]]

    assert await names(search="mU") == ["Mug"]  # name, any case
    assert await names(search="hat-r") == ["Cap"]  # a SKU, any case
    assert await names(search="100%_") == []  # LIKE wildcards are plain text
    assert await names(limit=2) == ["Cap", "Mug"]


async def test_list_products_pages_with_a_cursor_through_every_product_once(api: Api) -> None:
    """Keyset paging by name then id: same names are ordered by id, and every product is
    seen exactly once however the pages fall."""
    for n in range(7):
        variants = [{"sku": f"P-{n}", "options": {}, "on_hand": 1}]
        await _create(api, "Twin" if n % 2 else f"Item {n}", variants=variants)
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):  # bounded: 7 products in pages of 2 take 4 pages
        params: dict[str, object] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        answer = await api.client.get("/v1/products", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = (await api.client.get("/v1/products")).json()["items"]
    assert seen == [p["id"] for p in everything]
    assert len(seen) == len(set(seen)) == 7


@pytest.mark.parametrize(
    "params",
    [
        {"search": ""},
        {"search": "a\x00b"},
        {"search": "x" * 201},
        {"limit": 0},
        {"limit": 501},
        {"limit": "ten"},
        {"cursor": "no-such-product"},  # a cursor names a product of an earlier page
        {"cursor": "a\x00b"},
        {"cursor": "x" * 65},
        {"page": "2"},  # unknown parameters are refused, not ignored
    ],
)
async def test_list_products_refuses_bad_parameters(api: Api, params: dict[str, object]) -> None:
    assert_problem(await api.client.get("/v1/products", params=params), 422, "invalid-input")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_list_products_takes_the_api_or_admin_token(make_api: AppFactory) -> None:
    async with make_api(api_token=API_TOKEN) as api:
        assert_problem(await api.client.get("/v1/products"), 401)
        for token in (API_TOKEN, ADMIN_TOKEN):
            answer = await api.client.get("/v1/products", headers=bearer(token))
            assert answer.status_code == 200, answer.text
