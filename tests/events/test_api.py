"""The events API over HTTP (docs/events.md): the pull feed's long poll, webhook endpoints
with RFC 9457 problems for bad input, dead letters and their redelivery, the low-stock
threshold. The app runs with its relay, as ``serve`` does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.support import Api, AppFactory, assert_problem

from .receiver import running_receiver
from .test_webhooks import eventually

pytestmark = [pytest.mark.asyncio]
FAST = {"poll_interval_s": 0.02, "lease_s": 2.0, "webhook_backoff_s": 0.02}


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def feed(api: Api, **params: Any) -> dict[str, Any]:
    answer = await api.client.get("/v1/events", params=params, headers=api.admin)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_the_feed_long_poll_answers_with_the_event_that_arrives(
    make_api: AppFactory,
) -> None:
    async with make_api(events=FAST) as api:
        await api.set_stock("F", 1)
        first = await feed(api, wait_s=5)
        assert [e["type"] for e in first["events"]] == ["stock.changed"]
        after = first["next_after"]
        waiting = asyncio.create_task(feed(api, after=after, wait_s=20, types="stock.sold_out"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        answer = await api.reserve("o-1", {"F": 1})
        assert answer.status_code == 201
        page = await waiting
        assert [e["type"] for e in page["events"]] == ["stock.sold_out"]
        event = page["events"][0]
        assert event["sku"] == "F"
        assert event["data"]["levels"]["F"] == {"on_hand": 1, "reserved": 1, "available": 0}
        assert page["next_after"] == event["id"]
        quiet = await feed(api, after=page["next_after"], types="stock.low")
        assert quiet["events"] == []
        assert quiet["next_after"] >= page["next_after"]


async def test_the_feed_refuses_bad_parameters_as_problems(make_api: AppFactory) -> None:
    async with make_api(events=FAST) as api:
        for params in (
            {"wait_s": 31},
            {"limit": 0},
            {"after": -1},
            {"types": "stock.nope"},
            {"afterr": 1},
        ):
            answer = await api.client.get("/v1/events", params=params, headers=api.admin)
            assert_problem(answer, 422, "invalid-input")
        assert_problem(await api.client.get("/v1/events"), 401, "unauthorized")


async def test_webhook_endpoints_are_managed_and_bad_input_is_a_problem(
    make_api: AppFactory,
) -> None:
    async with make_api(events=FAST) as api:
        client, admin = api.client, api.admin
        for body in (
            {"url": "ftp://example.com/x"},
            {"url": "not a url"},
            {"url": "http://"},
            {"url": "https://example.com/x", "secret": "plain"},
            {"url": "https://example.com/x", "secret": "whsec_c2hvcnQ="},
            {"url": "https://example.com/x", "types": "stock.nope"},
            {"url": "https://example.com/x", "types": "none"},
            {"url": "https://example.com/x", "active": "yes"},
            {"url": "https://example.com/x", "extra": 1},
            {"url": "https://example.com/" + "x" * 3000},
        ):
            answer = await client.post("/v1/webhooks", json=body, headers=admin)
            assert_problem(answer, 422, "invalid-input")
        created = await client.post(
            "/v1/webhooks", json={"url": "https://example.com/hook"}, headers=admin
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_")
        listed = (await client.get("/v1/webhooks", headers=admin)).json()["items"]
        assert [e["id"] for e in listed] == [endpoint["id"]]
        assert "secret" not in listed[0]
        patched = await client.patch(
            f"/v1/webhooks/{endpoint['id']}", json={"active": False}, headers=admin
        )
        assert patched.json()["active"] is False
        unknown = "00000000-0000-0000-0000-000000000000"
        for answer in (
            await client.get(f"/v1/webhooks/{unknown}", headers=admin),
            await client.patch(f"/v1/webhooks/{unknown}", json={"active": True}, headers=admin),
            await client.delete(f"/v1/webhooks/{unknown}", headers=admin),
            await client.post(f"/v1/webhooks/{unknown}/dead-letters/1/redeliver", headers=admin),
        ):
            assert_problem(answer, 404, "webhook-not-found")
        assert_problem(await client.get("/v1/webhooks/not*an*id", headers=admin), 422)
        deleted = await client.delete(f"/v1/webhooks/{endpoint['id']}", headers=admin)
        assert deleted.status_code == 204
        assert (await client.get("/v1/webhooks", headers=admin)).json()["items"] == []
        assert_problem(await client.get("/v1/webhooks"), 401, "unauthorized")


async def test_a_dead_letter_is_listed_and_redelivered(make_api: AppFactory) -> None:
    settings = {**FAST, "webhook_attempts_max": 2}
    with running_receiver() as receiver:
        async with make_api(events=settings) as api:
            client, admin = api.client, api.admin
            receiver.status = 500
            created = await client.post("/v1/webhooks", json={"url": receiver.url}, headers=admin)
            endpoint = created.json()
            receiver.secret = endpoint["secret"]
            await api.set_stock("D", 3)

            async def dead() -> list[dict[str, Any]]:
                answer = await client.get("/v1/webhooks/dead-letters", headers=admin)
                items: list[dict[str, Any]] = answer.json()["items"]
                return items

            await eventually(dead, "a dead letter")
            letter = (await dead())[0]
            assert letter["type"] == "stock.changed"
            assert letter["attempts"] == 2
            deliveries = await client.get(
                f"/v1/webhooks/{endpoint['id']}/deliveries", headers=admin
            )
            outcomes = [d["outcome"] for d in deliveries.json()["items"]]
            assert outcomes[:2] == ["dead", "failed"]
            receiver.status = 200
            again = await client.post(
                f"/v1/webhooks/{endpoint['id']}/dead-letters/{letter['event_id']}/redeliver",
                headers=admin,
            )
            assert again.status_code == 200, again.text
            assert again.json()["delivered"] is True
            assert await dead() == []
            assert receiver.unique_ids() == [letter["event_id"]]
            assert receiver.bad_signatures == 0


async def test_the_low_stock_threshold_is_read_and_set(make_api: AppFactory) -> None:
    async with make_api(events=FAST) as api:
        client, admin = api.client, api.admin
        await api.set_stock("L", 10)
        path = "/v1/stock/L/low-stock-threshold"
        assert (await client.get(path, headers=admin)).json() == {"sku": "L", "threshold": None}
        put = await client.put(path, json={"threshold": 3}, headers=admin)
        assert put.json() == {"sku": "L", "threshold": 3}
        assert (await client.get(path, headers=admin)).json()["threshold"] == 3
        for body in ({"threshold": -1}, {"threshold": "3"}, {}, {"threshold": 3, "x": 1}):
            assert_problem(await client.put(path, json=body, headers=admin), 422, "invalid-input")
        assert_problem(
            await client.get("/v1/stock/NOPE/low-stock-threshold", headers=admin),
            404,
            "unknown-sku",
        )
        assert_problem(await client.get(path), 401, "unauthorized")
