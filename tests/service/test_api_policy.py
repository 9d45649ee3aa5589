"""GET/PUT /v1/stock/{sku}/policy and the problems a policy gives holds (issue 15;
docs/design.md#stock-policy), on every backend: admin only, compare-and-set with
``expected``, 409 customer-limit, 422 for a capped SKU without a customer; never a 500."""

from __future__ import annotations

from .support import Api, assert_problem

DEFAULTS = {
    "safety_stock": 0,
    "backorder_max": 0,
    "customer_max": None,
    "low_stock_threshold": None,
}


async def test_policy_round_trips_and_changes_what_is_available(api: Api) -> None:
    await api.set_stock("P", 10)
    url = "/v1/stock/P/policy"

    read = await api.client.get(url, headers=api.admin)
    assert read.status_code == 200, read.text
    assert read.json() == {"sku": "P", **DEFAULTS}
    wanted = {"safety_stock": 4, "customer_max": 2, "low_stock_threshold": 3}
    written = await api.client.put(url, json={**wanted, "expected": DEFAULTS}, headers=api.admin)
    assert written.status_code == 200, written.text
    assert written.json() == {"sku": "P", **DEFAULTS, **wanted}
    assert (await api.client.get(url, headers=api.admin)).json() == written.json()
    assert (await api.stock("P"))["available"] == 6
    # The events work's route reads the same field.
    threshold = await api.client.get("/v1/stock/P/low-stock-threshold", headers=api.admin)
    assert threshold.status_code == 200 and threshold.json()["threshold"] == 3

    stale = await api.client.put(url, json={"expected": DEFAULTS}, headers=api.admin)
    body = assert_problem(stale, 409, "policy-changed")
    assert body["policy"] == written.json()


async def test_policy_refusals_are_problems(api: Api) -> None:
    await api.set_stock("P", 10)
    url = "/v1/stock/P/policy"
    assert_problem(await api.client.get(url), 401, "unauthorized")
    assert_problem(await api.client.put(url, json={}), 401, "unauthorized")
    assert_problem(await api.client.get("/v1/stock/NOPE/policy", headers=api.admin), 404)
    assert_problem(await api.client.put("/v1/stock/NOPE/policy", json={}, headers=api.admin), 404)
    for bad in (
        {"safety_stock": -1},
        {"safety_stock": "3"},
        {"customer_max": 1.5},
        {"backorder_max": -1},
        {"backorder_max": 10**12 + 1},
        {"low_stock_threshold": -2},
        {"colour": "red"},
        {"expected": {"safety_stock": -1}},
        [],
    ):
        assert_problem(await api.client.put(url, json=bad, headers=api.admin), 422, "invalid-input")


async def test_holds_past_a_cap_or_without_a_customer_are_problems(api: Api) -> None:
    await api.set_stock("CAP", 10)
    written = await api.client.put(
        "/v1/stock/CAP/policy", json={"customer_max": 2, "safety_stock": 5}, headers=api.admin
    )
    assert written.status_code == 200, written.text

    held = await api.reserve("o-1", {"CAP": 2}, customer_id="alice")
    assert held.status_code == 201, held.text
    refused = assert_problem(
        await api.reserve("o-2", {"CAP": 1}, customer_id="alice"), 409, "customer-limit"
    )
    assert refused["limit"] == {"sku": "CAP", "customer_max": 2, "units": 2, "requested": 1}
    anonymous = assert_problem(await api.reserve("o-3", {"CAP": 1}), 422, "invalid-input")
    assert anonymous["errors"][0]["field"] == "customer_id"
    # Safety stock: 10 on hand, 5 kept, 2 held: bob can have 2, carol only 1 more.
    assert (await api.reserve("o-4", {"CAP": 2}, customer_id="bob")).status_code == 201
    short = assert_problem(
        await api.reserve("o-5", {"CAP": 2}, customer_id="carol"), 409, "out-of-stock"
    )
    assert short["shortfalls"] == [{"sku": "CAP", "requested": 2, "available": 1}]


async def test_a_backordered_hold_says_so_and_its_sale_takes_on_hand_below_zero(api: Api) -> None:
    """docs/design.md#backorders over HTTP: 1 on hand and 2 allowed beyond; a hold of 3
    has 2 backordered (in its answer, its replay and its GET), confirming it leaves
    on_hand at -2, and cutting the allowance below what is owed is 409 below-reserved."""
    await api.set_stock("BO", 1)
    policy = await api.client.put(
        "/v1/stock/BO/policy", json={"backorder_max": 2}, headers=api.admin
    )
    assert policy.status_code == 200, policy.text
    assert (await api.stock("BO"))["available"] == 3

    held = await api.reserve("bo-1", {"BO": 3})
    assert held.status_code == 201, held.text
    assert held.json()["items"] == [
        {
            "sku": "BO",
            "quantity": 3,
            "backordered": 2,
            "allocations": [{"location": "default", "quantity": 3, "backordered": 2}],
        }
    ]
    replay = await api.reserve("bo-1", {"BO": 3})
    assert replay.status_code == 200 and replay.json()["items"] == held.json()["items"]
    read = await api.client.get(f"/v1/reservations/{held.json()['id']}")
    assert read.json()["items"] == held.json()["items"]
    short = assert_problem(await api.reserve("bo-2", {"BO": 1}), 409, "out-of-stock")
    assert short["shortfalls"] == [{"sku": "BO", "requested": 1, "available": 0}]

    cut = await api.client.put("/v1/stock/BO/policy", json={}, headers=api.admin)
    assert_problem(cut, 409, "below-reserved")
    confirmed = await api.client.post(f"/v1/reservations/{held.json()['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    stock = await api.stock("BO")
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (-2, 0, 0)
    # A plain SKU's items say 0.
    await api.set_stock("PLAIN", 5)
    plain = await api.reserve("plain-1", {"PLAIN": 1})
    assert plain.json()["items"] == [
        {
            "sku": "PLAIN",
            "quantity": 1,
            "backordered": 0,
            "allocations": [{"location": "default", "quantity": 1, "backordered": 0}],
        }
    ]
