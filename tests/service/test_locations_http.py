"""Stock per location over HTTP (docs/locations.md#api), on every backend: the locations
routes, a location's stock, the per-location breakdown of the stock bodies, and holds that
pin, split or choose their allocation policy; the lean and the FastAPI path answer alike."""

from __future__ import annotations

from typing import Any

import pytest

from .support import Api, AppFactory, assert_problem, bearer


async def add_location(api: Api, code: str, priority: int = 10, **extra: Any) -> dict[str, Any]:
    body = {"code": code, "name": code.title(), "priority": priority, **extra}
    answer = await api.client.post("/v1/locations", json=body, headers=api.admin)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def stock_at(api: Api, sku: str, code: str, on_hand: int, **extra: Any) -> dict[str, Any]:
    answer = await api.client.put(
        f"/v1/stock/{sku}/locations/{code}", json={"on_hand": on_hand, **extra}, headers=api.admin
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def by_location(stock: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {
        level["location"]: (level["on_hand"], level["reserved"], level["available"])
        for level in stock["locations"]
    }


def allocations(reservation: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        item["sku"]: {a["location"]: a["quantity"] for a in item["allocations"]}
        for item in reservation["items"]
    }


async def test_locations_are_listed_created_and_changed(api: Api) -> None:
    created = await add_location(api, "store-1", 5)
    renamed = await api.client.patch(
        "/v1/locations/store-1", json={"name": "High Street", "priority": 3}, headers=api.admin
    )
    listed = await api.client.get("/v1/locations")

    assert created == {"code": "store-1", "name": "Store-1", "priority": 5, "active": True}
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == {
        "code": "store-1",
        "name": "High Street",
        "priority": 3,
        "active": True,
    }
    assert listed.status_code == 200
    assert listed.json() == [
        {"code": "default", "name": "Default", "priority": 0, "active": True},
        {"code": "store-1", "name": "High Street", "priority": 3, "active": True},
    ]


async def test_location_refusals_are_problems(api: Api) -> None:
    await add_location(api, "store-1")

    duplicate = await api.client.post(
        "/v1/locations", json={"code": "store-1", "name": "Again"}, headers=api.admin
    )
    unknown = await api.client.patch("/v1/locations/nowhere", json={"name": "X"}, headers=api.admin)
    default_off = await api.client.patch(
        "/v1/locations/default", json={"active": False}, headers=api.admin
    )
    bad_priority = await api.client.post(
        "/v1/locations", json={"code": "s2", "name": "S", "priority": -1}, headers=api.admin
    )
    bad_code = await api.client.post(
        "/v1/locations", json={"code": "a\u202eb", "name": "S"}, headers=api.admin
    )
    unknown_field = await api.client.patch(
        "/v1/locations/store-1", json={"colour": "red"}, headers=api.admin
    )
    no_token = await api.client.post("/v1/locations", json={"code": "s3", "name": "S"})
    api_token = await api.client.patch(
        "/v1/locations/store-1", json={"name": "S"}, headers=bearer("wrong")
    )

    assert_problem(duplicate, 409, "duplicate-location")
    assert_problem(unknown, 404, "unknown-location")
    assert assert_problem(default_off, 422, "invalid-input")["errors"][0]["field"] == "active"
    assert_problem(bad_priority, 422, "invalid-input")
    assert_problem(bad_code, 422, "invalid-input")
    assert_problem(unknown_field, 422, "invalid-input")
    assert_problem(no_token, 401, "unauthorized")
    assert api_token.status_code in (401, 403)
    codes = [location["code"] for location in (await api.client.get("/v1/locations")).json()]
    assert codes == ["default", "store-1"]


async def test_a_shop_without_locations_sees_one_default_level(api: Api) -> None:
    await api.set_stock("A", 5)
    held = await api.reserve("o-1", {"A": 2})

    assert held.status_code == 201, held.text
    assert held.json()["items"][0]["allocations"] == [
        {"location": "default", "quantity": 2, "backordered": 0}
    ]
    assert (await api.stock("A"))["locations"] == [
        {
            "location": "default",
            "on_hand": 5,
            "reserved": 2,
            "available": 3,
            "version": 1,
            "safety_stock": 0,
            "backorder_max": 0,
        }
    ]


async def test_stock_per_location_shows_the_breakdown_and_the_totals(api: Api) -> None:
    await add_location(api, "store-1")
    await stock_at(api, "MUG", "default", 6)
    answer = await stock_at(api, "MUG", "store-1", 4, safety_stock=1)

    assert (answer["on_hand"], answer["reserved"], answer["available"]) == (10, 0, 9)
    assert [level["location"] for level in answer["locations"]] == ["default", "store-1"]
    assert answer["locations"][1] == {
        "location": "store-1",
        "on_hand": 4,
        "reserved": 0,
        "available": 3,
        "version": answer["locations"][1]["version"],
        "safety_stock": 1,
        "backorder_max": 0,
    }
    assert await api.stock("MUG") == answer


async def test_location_stock_is_a_compare_and_set(api: Api) -> None:
    await add_location(api, "store-1")
    await stock_at(api, "MUG", "store-1", 4)

    stale = await api.client.put(
        "/v1/stock/MUG/locations/store-1",
        json={"on_hand": 9, "expected_on_hand": 3},
        headers=api.admin,
    )
    fresh = await api.client.put(
        "/v1/stock/MUG/locations/store-1",
        json={"on_hand": 9, "expected_on_hand": 4},
        headers=api.admin,
    )
    nowhere = await api.client.put(
        "/v1/stock/MUG/locations/nowhere", json={"on_hand": 1}, headers=api.admin
    )
    negative = await api.client.put(
        "/v1/stock/MUG/locations/store-1", json={"on_hand": -1}, headers=api.admin
    )
    unknown_sku = await api.client.put(
        "/v1/stock/NEW/locations/store-1",
        json={"on_hand": 1, "expected_on_hand": 0},
        headers=api.admin,
    )

    problem = assert_problem(stale, 409, "stock-changed")
    assert by_location(problem["current"])["store-1"] == (4, 0, 4)
    assert fresh.status_code == 200, fresh.text
    assert by_location(fresh.json())["store-1"] == (9, 0, 9)
    assert_problem(nowhere, 404, "unknown-location")
    assert_problem(negative, 422, "invalid-input")
    assert_problem(unknown_sku, 404, "unknown-sku")


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "fastapi"])
async def test_pinned_and_split_holds_draw_where_asked(make_api: AppFactory, lean: bool) -> None:
    async with make_api(lean=lean) as api:
        await add_location(api, "store-1")
        await stock_at(api, "MUG", "default", 3)
        await stock_at(api, "MUG", "store-1", 2)

        pinned = await api.client.post(
            "/v1/reservations",
            json={
                "order_id": "collect",
                "items": [{"sku": "MUG", "quantity": 1, "location": "store-1"}],
            },
        )
        split = await api.reserve("split", {"MUG": 4})
        stock = await api.stock("MUG")

    assert pinned.status_code == 201, pinned.text
    assert allocations(pinned.json()) == {"MUG": {"store-1": 1}}
    assert split.status_code == 201, split.text
    assert allocations(split.json()) == {"MUG": {"default": 3, "store-1": 1}}
    assert split.json()["items"][0]["allocations"][0] == {
        "location": "default", "quantity": 3, "backordered": 0
    }  # fmt: skip
    assert by_location(stock) == {"default": (3, 3, 0), "store-1": (2, 2, 0)}
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (5, 5, 0)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "fastapi"])
async def test_policy_and_split_are_honoured_and_refusals_are_problems(
    make_api: AppFactory, lean: bool
) -> None:
    async with make_api(lean=lean) as api:
        await add_location(api, "store-1")
        await stock_at(api, "MUG", "default", 2)
        await stock_at(api, "MUG", "store-1", 3)

        whole = await api.reserve("whole", {"MUG": 4}, split=False)
        most = await api.reserve("most", {"MUG": 1}, allocation_policy="most_available")
        unknown_pin = await api.client.post(
            "/v1/reservations",
            json={
                "order_id": "pin",
                "items": [{"sku": "MUG", "quantity": 1, "location": "nowhere"}],
            },
        )
        bad_policy = await api.reserve("bad", {"MUG": 1}, allocation_policy="cheapest")
        bad_split = await api.reserve("bad-split", {"MUG": 1}, split="no")

    problem = assert_problem(whole, 409, "out-of-stock")
    assert problem["shortfalls"] == [{"sku": "MUG", "requested": 4, "available": 3}]
    assert most.status_code == 201, most.text
    assert allocations(most.json()) == {"MUG": {"store-1": 1}}
    assert_problem(unknown_pin, 422, "invalid-input")
    assert_problem(bad_policy, 422, "invalid-input")
    assert_problem(bad_split, 422, "invalid-input")


async def test_a_deactivated_location_leaves_the_totals_and_refuses_its_pins(api: Api) -> None:
    await add_location(api, "store-1")
    await stock_at(api, "MUG", "default", 1)
    await stock_at(api, "MUG", "store-1", 2)
    held = await api.client.post(
        "/v1/reservations",
        json={
            "order_id": "before",
            "items": [{"sku": "MUG", "quantity": 1, "location": "store-1"}],
        },
    )

    off = await api.client.patch("/v1/locations/store-1", json={"active": False}, headers=api.admin)
    refused = await api.client.post(
        "/v1/reservations",
        json={"order_id": "after", "items": [{"sku": "MUG", "quantity": 1, "location": "store-1"}]},
    )
    stock = await api.stock("MUG")
    released = await api.client.post(f"/v1/reservations/{held.json()['id']}/release")
    back_on = await api.client.patch(
        "/v1/locations/store-1", json={"active": True}, headers=api.admin
    )

    assert held.status_code == 201, held.text
    assert off.status_code == 200 and off.json()["active"] is False
    assert_problem(refused, 409, "out-of-stock")
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (1, 0, 1)
    assert by_location(stock)["store-1"] == (2, 1, 1)
    assert released.status_code == 200, released.text
    assert back_on.json()["active"] is True
    assert (await api.stock("MUG"))["available"] == 3


async def test_the_shop_default_policy_comes_from_the_setting(make_api: AppFactory) -> None:
    async with make_api(allocation_policy="most_available") as api:
        await add_location(api, "store-1")
        await stock_at(api, "MUG", "default", 1)
        await stock_at(api, "MUG", "store-1", 3)
        held = await api.reserve("o", {"MUG": 1})

    assert held.status_code == 201, held.text
    assert allocations(held.json()) == {"MUG": {"store-1": 1}}
