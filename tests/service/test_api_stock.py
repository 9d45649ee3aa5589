"""GET/PUT /v1/stock, adjustments and movements over HTTP (docs/design.md#api), on every backend."""

from __future__ import annotations

import pytest

from .support import Api, assert_problem, at_default


async def test_get_stock_answers_the_level_and_404_for_an_unknown_sku(api: Api) -> None:
    await api.set_stock("A", 7)
    await api.reserve("order-1", {"A": 2})

    found = await api.client.get("/v1/stock/A")
    missing = await api.client.get("/v1/stock/NOPE")

    assert found.status_code == 200
    assert found.json() == {
        "sku": "A", "on_hand": 7, "reserved": 2, "available": 5, "version": 1,
        "locations": at_default(7, 2, 1),
    }  # fmt: skip
    assert assert_problem(missing, 404, "unknown-sku")["skus"] == ["NOPE"]


async def test_get_stock_of_several_skus_leaves_unknown_ones_out(api: Api) -> None:
    await api.set_stock("B", 2)
    await api.set_stock("A", 1)

    answer = await api.client.get("/v1/stock?sku=B&sku=NOPE&sku=A")

    assert answer.status_code == 200
    assert [level["sku"] for level in answer.json()] == ["A", "B"]


@pytest.mark.parametrize("query", ["", "?" + "&".join(f"sku=S{n}" for n in range(101))])
async def test_get_stock_needs_one_to_a_hundred_skus(api: Api, query: str) -> None:
    assert_problem(await api.client.get(f"/v1/stock{query}"), 422, "invalid-input")


async def test_put_stock_creates_a_missing_sku_then_sets_its_on_hand(api: Api) -> None:
    created = await api.client.put("/v1/stock/NEW", json={"on_hand": 4}, headers=api.admin)
    changed = await api.client.put(
        "/v1/stock/NEW", json={"on_hand": 9, "expected_on_hand": 4}, headers=api.admin
    )

    assert created.status_code == changed.status_code == 200
    assert created.json()["on_hand"] == 4
    assert changed.json() == {
        "sku": "NEW", "on_hand": 9, "reserved": 0, "available": 9, "version": 1,
        "locations": at_default(9, 0, 1),
    }  # fmt: skip


async def test_put_stock_with_a_stale_expectation_is_stock_changed_with_the_current_level(
    api: Api,
) -> None:
    await api.set_stock("A", 10)
    await api.reserve("order-1", {"A": 3})

    answer = await api.client.put(
        "/v1/stock/A", json={"on_hand": 20, "expected_on_hand": 8}, headers=api.admin
    )

    problem = assert_problem(answer, 409, "stock-changed")
    assert problem["current"] == {
        "sku": "A", "on_hand": 10, "reserved": 3, "available": 7, "version": 1,
        "locations": at_default(10, 3, 1),
    }  # fmt: skip
    assert (await api.stock("A"))["on_hand"] == 10


async def test_put_stock_below_what_is_reserved_is_409(api: Api) -> None:
    await api.set_stock("A", 10)
    await api.reserve("order-1", {"A": 3})

    answer = await api.client.put("/v1/stock/A", json={"on_hand": 2}, headers=api.admin)

    assert assert_problem(answer, 409, "below-reserved")["current"]["reserved"] == 3
    assert (await api.stock("A"))["on_hand"] == 10


async def test_put_stock_expecting_a_level_of_a_missing_sku_is_404(api: Api) -> None:
    answer = await api.client.put(
        "/v1/stock/NEW", json={"on_hand": 4, "expected_on_hand": 0}, headers=api.admin
    )

    assert_problem(answer, 404, "unknown-sku")
    assert_problem(await api.client.get("/v1/stock/NEW"), 404, "unknown-sku")


@pytest.mark.parametrize(
    "body",
    [
        {"on_hand": -1},
        {"on_hand": 10**12 + 1},
        {"on_hand": 5, "expected_on_hand": -1},
        {"on_hand": "5"},
        {"on_hand": 5.5},
        {"on_hand": True},
        {},
        {"on_hand": 5, "colour": "red"},
    ],
)
async def test_put_stock_with_an_invalid_body_is_422(api: Api, body: dict[str, object]) -> None:
    await api.set_stock("A", 3)

    answer = await api.client.put("/v1/stock/A", json=body, headers=api.admin)

    assert_problem(answer, 422, "invalid-input")
    assert (await api.stock("A"))["on_hand"] == 3


async def test_adjustments_add_and_remove_units_but_never_below_reserved(api: Api) -> None:
    await api.set_stock("A", 10)
    await api.reserve("order-1", {"A": 4})

    added = await api.client.post(
        "/v1/stock/A/adjustments", json={"delta": 5, "reason": "delivery"}, headers=api.admin
    )
    removed = await api.client.post(
        "/v1/stock/A/adjustments", json={"delta": -11, "reason": "damaged"}, headers=api.admin
    )
    too_many = await api.client.post(
        "/v1/stock/A/adjustments", json={"delta": -1, "reason": "lost"}, headers=api.admin
    )

    assert added.status_code == removed.status_code == 200
    assert added.json()["on_hand"] == 15
    version = removed.json()["version"]
    assert removed.json() == {"sku": "A", "on_hand": 4, "reserved": 4, "available": 0,
                              "version": version,
                              "locations": at_default(4, 4, version)}  # fmt: skip
    assert_problem(too_many, 409, "below-reserved")
    assert (await api.stock("A"))["on_hand"] == 4


async def test_adjusting_an_unknown_sku_is_404_and_a_zero_delta_422(api: Api) -> None:
    await api.set_stock("A", 1)

    unknown = await api.client.post(
        "/v1/stock/NOPE/adjustments", json={"delta": 1, "reason": "x"}, headers=api.admin
    )
    zero = await api.client.post(
        "/v1/stock/A/adjustments", json={"delta": 0, "reason": "x"}, headers=api.admin
    )

    assert_problem(unknown, 404, "unknown-sku")
    assert_problem(zero, 422, "invalid-input")


async def test_movements_list_the_ledger_newest_first_in_pages(api: Api) -> None:
    await api.set_stock("A", 10)
    await api.client.post(
        "/v1/stock/A/adjustments", json={"delta": 2, "reason": "delivery"}, headers=api.admin
    )
    held = (await api.reserve("order-1", {"A": 3})).json()
    await api.client.post(f"/v1/reservations/{held['id']}/confirm")

    first = await api.client.get("/v1/stock/A/movements?limit=2", headers=api.admin)
    rest = await api.client.get(
        "/v1/stock/A/movements",
        params={"limit": 2, "cursor": first.json()["next_cursor"]},
        headers=api.admin,
    )

    assert first.status_code == rest.status_code == 200
    items = first.json()["items"] + rest.json()["items"]
    assert [(m["delta"], m["on_hand_after"]) for m in items] == [(-3, 9), (2, 12), (10, 10)]
    assert items[0]["reservation_id"] == held["id"]
    assert items[1]["reason"] == "delivery"
    assert all(m["at"].endswith("Z") for m in items)
    assert rest.json()["next_cursor"] is None


async def test_movements_of_an_unknown_sku_are_404(api: Api) -> None:
    answer = await api.client.get("/v1/stock/NOPE/movements", headers=api.admin)

    assert_problem(answer, 404, "unknown-sku")
