"""POST /v1/reservations/{id}/extend and a release with items over HTTP (issue 15;
docs/design.md#extending-a-hold, docs/design.md#partial-release), on every backend.

The app runs with its lean path on (the default), so a release with a body also shows
that the lean path leaves it to FastAPI's route.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from .support import Api, assert_problem


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_extend_answers_the_hold_with_its_new_expiry(api: Api) -> None:
    await api.set_stock("A", 5)
    hold = (await api.reserve("order-1", {"A": 2}, ttl_seconds=60)).json()

    answer = await api.client.post(
        f"/v1/reservations/{hold['id']}/extend", json={"ttl_seconds": 600}
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: v for k, v in body.items() if k != "expires_at"} == {
        k: v for k, v in hold.items() if k != "expires_at"
    }
    assert parse_time(body["expires_at"]) - parse_time(hold["expires_at"]) >= timedelta(seconds=500)
    again = await api.client.post(f"/v1/reservations/{hold['id']}/extend", json={"ttl_seconds": 30})
    assert again.status_code == 200 and again.json()["expires_at"] == body["expires_at"]
    capped = await api.client.post(
        f"/v1/reservations/{hold['id']}/extend", json={"ttl_seconds": 86_400}
    )
    assert parse_time(capped.json()["expires_at"]) == parse_time(hold["created_at"]) + timedelta(
        hours=24
    )
    assert (await api.stock("A"))["reserved"] == 2


async def test_extend_refusals_are_problems(api: Api) -> None:
    await api.set_stock("A", 5)
    hold = (await api.reserve("order-1", {"A": 1}, ttl_seconds=1)).json()
    sold = (await api.reserve("order-2", {"A": 1})).json()
    await api.client.post(f"/v1/reservations/{sold['id']}/confirm")
    url = f"/v1/reservations/{hold['id']}/extend"

    for bad in ({}, {"ttl_seconds": 0}, {"ttl_seconds": "60"}, {"ttl_seconds": 60, "x": 1}):
        assert_problem(await api.client.post(url, json=bad), 422, "invalid-input")
    assert_problem(
        await api.client.post(f"/v1/reservations/{sold['id']}/extend", json={"ttl_seconds": 60}),
        409,
        "invalid-state",
    )
    assert_problem(
        await api.client.post("/v1/reservations/nope/extend", json={"ttl_seconds": 60}),
        404,
        "reservation-not-found",
    )
    await asyncio.sleep(1.1)
    assert_problem(await api.client.post(url, json={"ttl_seconds": 60}), 410, "reservation-expired")
    # No sweep ran: the extend itself ended the hold as expired, as a late confirm does.
    assert (await api.client.get(f"/v1/reservations/{hold['id']}")).json()["status"] == "expired"
    assert (await api.stock("A"))["reserved"] == 0


async def test_release_with_items_gives_back_those_units_only(api: Api) -> None:
    await api.set_stock("A", 10)
    await api.set_stock("B", 10)
    hold = (await api.reserve("order-1", {"A": 5, "B": 2})).json()
    url = f"/v1/reservations/{hold['id']}/release"

    answer = await api.client.post(url, json={"items": [{"sku": "A", "quantity": 2}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "held"
    assert answer.json()["items"] == [
        {
            "sku": "A",
            "quantity": 3,
            "backordered": 0,
            "allocations": [{"location": "default", "quantity": 3, "backordered": 0}],
        },
        {
            "sku": "B",
            "quantity": 2,
            "backordered": 0,
            "allocations": [{"location": "default", "quantity": 2, "backordered": 0}],
        },
    ]
    answer = await api.client.post(url, json={"items": [{"sku": "B", "quantity": 2}]})
    assert answer.json()["items"] == [
        {
            "sku": "A",
            "quantity": 3,
            "backordered": 0,
            "allocations": [{"location": "default", "quantity": 3, "backordered": 0}],
        }
    ]
    assert (await api.stock("A"))["reserved"] == 3
    assert (await api.stock("B"))["reserved"] == 0

    for bad in (
        {"items": [{"sku": "A", "quantity": 4}]},
        {"items": [{"sku": "C", "quantity": 1}]},
        {"items": []},
        {},
        {"items": [{"sku": "A", "quantity": "1"}]},
    ):
        assert_problem(await api.client.post(url, json=bad), 422, "invalid-input")
    assert (await api.stock("A"))["reserved"] == 3

    confirmed = await api.client.post(f"/v1/reservations/{hold['id']}/confirm")
    assert confirmed.json()["items"] == [
        {
            "sku": "A",
            "quantity": 3,
            "backordered": 0,
            "allocations": [{"location": "default", "quantity": 3, "backordered": 0}],
        }
    ]
    assert (await api.stock("A"))["on_hand"] == 7
    assert_problem(
        await api.client.post(url, json={"items": [{"sku": "A", "quantity": 1}]}),
        409,
        "invalid-state",
    )


async def test_release_without_a_body_is_the_full_release_as_before(api: Api) -> None:
    await api.set_stock("A", 10)
    hold = (await api.reserve("order-1", {"A": 4})).json()
    url = f"/v1/reservations/{hold['id']}/release"
    await api.client.post(url, json={"items": [{"sku": "A", "quantity": 1}]})

    for _ in range(2):
        answer = await api.client.post(url)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "released"
        assert answer.json()["items"] == [
            {
                "sku": "A",
                "quantity": 3,
                "backordered": 0,
                "allocations": [{"location": "default", "quantity": 3, "backordered": 0}],
            }
        ]
    assert (await api.stock("A"))["reserved"] == 0


async def test_the_openapi_document_describes_both_bodies(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    paths = document["paths"]
    release = paths["/v1/reservations/{reservation_id}/release"]["post"]
    extend = paths["/v1/reservations/{reservation_id}/extend"]["post"]
    assert "requestBody" in release and not release["requestBody"].get("required", False)
    assert extend["requestBody"]["required"] is True
    schemas = document["components"]["schemas"]
    assert schemas["ExtendIn"]["required"] == ["ttl_seconds"]
    assert schemas["ReleaseIn"]["required"] == ["items"]
    assert {"404", "409", "410", "422"} <= set(extend["responses"])
