"""POST/GET /v1/reservations, confirm and release over HTTP (docs/design.md#api), on
every backend."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from .support import ADMIN_TOKEN, Api, AppFactory, assert_problem, at_default, bearer


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


async def test_reserve_holds_stock_and_answers_201_with_the_reservation(api: Api) -> None:
    await api.set_stock("TEE-S-RED", 10)

    answer = await api.reserve(
        "order-1", {"TEE-S-RED": 3}, ttl_seconds=600, customer_id="customer-7"
    )

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert set(body) == {
        "id", "order_id", "customer_id", "status", "items", "expires_at", "created_at"
    }  # fmt: skip
    assert body["order_id"] == "order-1"
    assert body["customer_id"] == "customer-7"
    assert body["status"] == "held"
    assert body["items"] == [
        {
            "sku": "TEE-S-RED",
            "quantity": 3,
            "backordered": 0,
            "allocations": [{"location": "default", "quantity": 3, "backordered": 0}],
        }
    ]
    held_for = parse_time(body["expires_at"]) - parse_time(body["created_at"])
    assert held_for == timedelta(seconds=600)
    assert await api.stock("TEE-S-RED") == {
        "sku": "TEE-S-RED", "on_hand": 10, "reserved": 3, "available": 7, "version": 1,
        "locations": at_default(10, 3, 1),
    }  # fmt: skip


async def test_an_identical_replay_answers_200_with_the_same_reservation(api: Api) -> None:
    await api.set_stock("A", 5)
    first = await api.reserve("order-1", {"A": 2})

    again = await api.reserve("order-1", {"A": 2})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert (await api.stock("A"))["reserved"] == 2


async def test_the_same_order_with_other_items_is_an_idempotency_conflict(api: Api) -> None:
    await api.set_stock("A", 5)
    await api.reserve("order-1", {"A": 2})

    answer = await api.reserve("order-1", {"A": 3})

    assert_problem(answer, 409, "idempotency-conflict")
    assert (await api.stock("A"))["reserved"] == 2


async def test_more_than_available_is_out_of_stock_with_shortfalls_and_holds_nothing(
    api: Api,
) -> None:
    await api.set_stock("A", 5)
    await api.set_stock("B", 1)

    answer = await api.reserve("order-1", {"A": 2, "B": 3})

    problem = assert_problem(answer, 409, "out-of-stock")
    assert problem["shortfalls"] == [{"sku": "B", "requested": 3, "available": 1}]
    assert (await api.stock("A"))["reserved"] == 0
    assert await api.reservation_count() == 0


async def test_reserving_an_unknown_sku_is_404(api: Api) -> None:
    await api.set_stock("A", 5)

    answer = await api.reserve("order-1", {"A": 1, "NOPE": 1})

    assert assert_problem(answer, 404, "unknown-sku")["skus"] == ["NOPE"]
    assert (await api.stock("A"))["reserved"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"order_id": "o", "items": []}, "body.items"),
        ({"order_id": "o", "items": [{"sku": f"S{n}", "quantity": 1} for n in range(101)]},
         "body.items"),
        ({"order_id": "o", "items": [{"sku": "A", "quantity": 0}]}, "body.items.0.quantity"),
        ({"order_id": "o", "items": [{"sku": "A", "quantity": 1_000_001}]},
         "body.items.0.quantity"),
        ({"order_id": "o", "items": [{"sku": "A", "quantity": 1}], "ttl_seconds": 0},
         "body.ttl_seconds"),
        ({"order_id": "o", "items": [{"sku": "A", "quantity": 1}], "ttl_seconds": 86_401},
         "body.ttl_seconds"),
        ({"order_id": "", "items": [{"sku": "A", "quantity": 1}]}, "body.order_id"),
        ({"order_id": "o" * 129, "items": [{"sku": "A", "quantity": 1}]}, "body.order_id"),
        ({"order_id": "o", "items": [{"sku": "A", "quantity": 1}], "customer_id": "c" * 129},
         "body.customer_id"),
        ({"order_id": "o", "items": [{"sku": "A" * 65, "quantity": 1}]}, "body.items.0.sku"),
        ({"order_id": "o", "items": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 2}]},
         "items[1].sku"),
    ],
)  # fmt: skip
async def test_input_outside_the_limits_is_422_and_writes_nothing(
    api: Api, body: dict[str, object], field: str
) -> None:
    await api.set_stock("A", 5)

    answer = await api.client.post("/v1/reservations", json=body)

    problem = assert_problem(answer, 422, "invalid-input")
    assert field in [error["field"] for error in problem["errors"]]
    assert (await api.stock("A"))["reserved"] == 0
    assert await api.reservation_count() == 0


async def test_get_reservation_answers_it_and_404_for_an_unknown_id(api: Api) -> None:
    await api.set_stock("A", 5)
    created = (await api.reserve("order-1", {"A": 1})).json()

    found = await api.client.get(f"/v1/reservations/{created['id']}")
    missing = await api.client.get("/v1/reservations/no-such-reservation")

    assert found.status_code == 200
    assert found.json() == created
    assert_problem(missing, 404, "reservation-not-found")


async def test_confirm_sells_the_held_units_and_is_replay_safe(api: Api) -> None:
    await api.set_stock("A", 5)
    held = (await api.reserve("order-1", {"A": 2})).json()

    confirmed = await api.client.post(f"/v1/reservations/{held['id']}/confirm")
    again = await api.client.post(f"/v1/reservations/{held['id']}/confirm")

    assert confirmed.status_code == again.status_code == 200
    assert confirmed.json() == {**held, "status": "confirmed"} == again.json()
    stock = await api.stock("A")
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (3, 0, 3)


async def test_release_returns_the_held_units_and_is_replay_safe(api: Api) -> None:
    await api.set_stock("A", 5)
    held = (await api.reserve("order-1", {"A": 2})).json()

    released = await api.client.post(f"/v1/reservations/{held['id']}/release")
    again = await api.client.post(f"/v1/reservations/{held['id']}/release")

    assert released.status_code == again.status_code == 200
    assert released.json()["status"] == again.json()["status"] == "released"
    stock = await api.stock("A")
    assert (stock["on_hand"], stock["reserved"]) == (5, 0)


async def test_a_released_reservation_cannot_be_confirmed_nor_a_confirmed_one_released(
    api: Api,
) -> None:
    await api.set_stock("A", 5)
    released = (await api.reserve("order-1", {"A": 1})).json()
    confirmed = (await api.reserve("order-2", {"A": 1})).json()
    await api.client.post(f"/v1/reservations/{released['id']}/release")
    await api.client.post(f"/v1/reservations/{confirmed['id']}/confirm")

    confirm_released = await api.client.post(f"/v1/reservations/{released['id']}/confirm")
    release_confirmed = await api.client.post(f"/v1/reservations/{confirmed['id']}/release")

    assert_problem(confirm_released, 409, "invalid-state")
    assert_problem(release_confirmed, 409, "invalid-state")
    stock = await api.stock("A")
    assert (stock["on_hand"], stock["reserved"]) == (4, 0)


async def test_confirm_and_release_of_an_unknown_reservation_are_404(api: Api) -> None:
    for action in ("confirm", "release"):
        answer = await api.client.post(f"/v1/reservations/nope/{action}")
        assert_problem(answer, 404, "reservation-not-found")


async def test_after_expiry_confirm_is_410_and_release_answers_expired(api: Api) -> None:
    """Two 1-second holds outlive their TTL; no sweep runs meanwhile (the fixture's
    interval is an hour), so the database clock alone decides."""
    await api.set_stock("A", 5)
    to_confirm = (await api.reserve("order-1", {"A": 1}, ttl_seconds=1)).json()
    to_release = (await api.reserve("order-2", {"A": 1}, ttl_seconds=1)).json()
    await asyncio.sleep(1.2)

    confirm = await api.client.post(f"/v1/reservations/{to_confirm['id']}/confirm")
    release = await api.client.post(f"/v1/reservations/{to_release['id']}/release")

    assert_problem(confirm, 410, "reservation-expired")
    assert release.status_code == 200
    assert release.json()["status"] == "expired"
    stock = await api.stock("A")
    assert (stock["on_hand"], stock["reserved"]) == (5, 0)


async def test_the_sweeper_expires_holds_past_their_ttl_and_returns_the_stock(
    make_api: AppFactory,
) -> None:
    """A service sweeping every 0.2 s: a 1 s hold ends as expired without any call."""
    async with make_api(sweep_interval_s=0.2) as api:
        await api.set_stock("A", 5)
        held = (await api.reserve("order-1", {"A": 2}, ttl_seconds=1)).json()
        await asyncio.sleep(1.6)

        found = await api.client.get(f"/v1/reservations/{held['id']}")
        stock = await api.stock("A")

    assert found.json()["status"] == "expired"
    assert (stock["on_hand"], stock["reserved"]) == (5, 0)


async def test_listing_reservations_filters_and_pages_newest_first(api: Api) -> None:
    await api.set_stock("A", 10)
    await api.set_stock("B", 10)
    ids = []
    for n in range(5):
        sku = "A" if n % 2 == 0 else "B"
        answer = await api.reserve(f"order-{n}", {sku: 1}, customer_id=f"c{n % 2}")
        ids.append(answer.json()["id"])
    await api.client.post(f"/v1/reservations/{ids[0]}/confirm")

    first = (await api.client.get("/v1/reservations?limit=2", headers=api.admin)).json()
    second = (
        await api.client.get(
            "/v1/reservations", params={"limit": 2, "cursor": first["next_cursor"]},
            headers=api.admin,
        )
    ).json()  # fmt: skip
    by_sku = (await api.client.get("/v1/reservations?sku=B", headers=api.admin)).json()
    held = (await api.client.get("/v1/reservations?status=held", headers=api.admin)).json()
    by_order = (await api.client.get("/v1/reservations?order_id=order-3", headers=api.admin)).json()
    by_customer = (
        await api.client.get("/v1/reservations?customer_id=c0", headers=api.admin)
    ).json()

    assert [r["id"] for r in first["items"]] == [ids[4], ids[3]]
    assert [r["id"] for r in second["items"]] == [ids[2], ids[1]]
    assert [r["id"] for r in by_sku["items"]] == [ids[3], ids[1]]
    assert ids[0] not in [r["id"] for r in held["items"]] and len(held["items"]) == 4
    assert [r["id"] for r in by_order["items"]] == [ids[3]]
    assert [r["id"] for r in by_customer["items"]] == [ids[4], ids[2], ids[0]]
    assert by_customer["next_cursor"] is None


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "cursor=not-a-cursor", "status=lost", "sku="]
)
async def test_listing_with_invalid_parameters_is_422(api: Api, query: str) -> None:
    answer = await api.client.get(f"/v1/reservations?{query}", headers=api.admin)

    assert_problem(answer, 422, "invalid-input")


async def test_listing_reservations_needs_the_admin_token(api: Api) -> None:
    without = await api.client.get("/v1/reservations")
    wrong = await api.client.get("/v1/reservations", headers=bearer(ADMIN_TOKEN + "x"))

    assert_problem(without, 401, "unauthorized")
    assert_problem(wrong, 401, "unauthorized")
    assert without.headers["www-authenticate"] == "Bearer"
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_quantity_written_as_an_integral_number_like_2_0_is_2(api: Api) -> None:
    """JSON has one number type and JSON Schema calls 2.0 an integer; 2.5 stays refused."""
    await api.set_stock("A", 5)

    whole = await api.client.post(
        "/v1/reservations", json={"order_id": "o1", "items": [{"sku": "A", "quantity": 2.0}]}
    )
    fraction = await api.client.post(
        "/v1/reservations", json={"order_id": "o2", "items": [{"sku": "A", "quantity": 2.5}]}
    )

    assert whole.status_code == 201
    assert whole.json()["items"] == [
        {
            "sku": "A",
            "quantity": 2,
            "backordered": 0,
            "allocations": [{"location": "default", "quantity": 2, "backordered": 0}],
        }
    ]
    assert_problem(fraction, 422, "invalid-input")


async def test_an_unknown_query_parameter_is_422_like_an_unknown_field(api: Api) -> None:
    await api.set_stock("A", 5)

    typo = await api.client.get("/v1/reservations?stauts=held", headers=api.admin)
    stock = await api.client.get("/v1/stock/A?verbose=1")

    assert assert_problem(typo, 422, "invalid-input")["errors"] == [
        {"field": "query.stauts", "detail": "unknown parameter"}
    ]
    assert_problem(stock, 422, "invalid-input")
