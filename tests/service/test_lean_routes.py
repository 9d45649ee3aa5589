"""The lean hot routes answer exactly what the FastAPI app answers.

Two apps serve one database: ``lean`` (the default, hot routes answered by
``service/lean.py``) and ``framework`` (every request through FastAPI). The same
reservation read through both gives the same bytes; every refusal gives the same problem
document; and a request the lean path is not sure of (bad body, query string, missing
token) is answered by FastAPI, so its 401/422 is the framework's, byte for byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockguard.service import models
from stockguard.service.lean import rfc3339_ms

from .support import API_TOKEN, Api, AppFactory, bearer

JSON = {"content-type": "application/json"}


@dataclass
class Pair:
    lean: Api
    framework: Api


@pytest.fixture
async def pair(make_api: AppFactory) -> AsyncIterator[Pair]:
    async with AsyncExitStack() as stack:
        lean = await stack.enter_async_context(make_api())
        framework = await stack.enter_async_context(make_api(lean=False))
        yield Pair(lean, framework)


def same(first: httpx.Response, second: httpx.Response) -> None:
    assert first.status_code == second.status_code, (first.text, second.text)
    assert first.content == second.content
    for header in ("content-type", "content-length", "retry-after", "www-authenticate"):
        assert first.headers.get(header) == second.headers.get(header), header


def body(order_id: str, sku: str, quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"order_id": order_id, "items": [{"sku": sku, "quantity": quantity}], **extra}


async def test_a_hold_reads_the_same_through_both(pair: Pair) -> None:
    await pair.lean.set_stock("A", 5)
    held = await pair.lean.client.post(
        "/v1/reservations", json=body("o-1", "A", 2, customer_id="c-1", ttl_seconds=60)
    )
    assert held.status_code == 201, held.text
    replay_lean = await pair.lean.client.post(
        "/v1/reservations", json=body("o-1", "A", 2, customer_id="c-1", ttl_seconds=60)
    )
    replay_framework = await pair.framework.client.post(
        "/v1/reservations", json=body("o-1", "A", 2, customer_id="c-1", ttl_seconds=60)
    )
    same(replay_lean, replay_framework)
    assert replay_lean.status_code == 200
    assert replay_lean.content == held.content

    path = f"/v1/reservations/{held.json()['id']}"
    same(await pair.lean.client.get(path), await pair.framework.client.get(path))
    confirmed = await pair.lean.client.post(path + "/confirm")
    same(confirmed, await pair.framework.client.post(path + "/confirm"))  # replay-safe
    assert confirmed.json()["status"] == "confirmed"
    same(await pair.lean.client.get("/v1/stock/A"), await pair.framework.client.get("/v1/stock/A"))
    same(await pair.lean.client.get("/healthz"), await pair.framework.client.get("/healthz"))


async def test_every_refusal_is_the_same_problem(pair: Pair) -> None:
    await pair.lean.set_stock("ONE", 1)
    await pair.lean.set_stock("ZERO", 0)
    kept = (await pair.lean.reserve("keep", {"ONE": 1})).json()
    released = await pair.lean.client.post(f"/v1/reservations/{kept['id']}/release")
    assert released.status_code == 200
    for api in (pair.lean, pair.framework):  # both engines learn ZERO is sold out
        await api.reserve("warm", {"ZERO": 1})

    cases: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/v1/reservations", body("short", "ZERO")),
        ("POST", "/v1/reservations", body("unknown", "NOPE")),
        ("POST", "/v1/reservations", body("keep", "ONE", 2)),  # other lines: conflict
        ("GET", "/v1/reservations/no-such-id", None),
        ("POST", "/v1/reservations/no-such-id/confirm", None),
        ("POST", f"/v1/reservations/{kept['id']}/confirm", None),  # released: invalid state
        ("GET", "/v1/stock/NOPE", None),
    ]
    for method, path, json_body in cases:
        lean = await pair.lean.client.request(method, path, json=json_body)
        framework = await pair.framework.client.request(method, path, json=json_body)
        assert lean.status_code in (404, 409), lean.text
        same(lean, framework)


async def test_what_the_lean_path_is_not_sure_of_goes_to_fastapi(pair: Pair) -> None:
    await pair.lean.set_stock("A", 5)
    odd: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/reservations", {"json": {"order_id": "x", "items": [{"sku": "A"}]}}),
        ("POST", "/v1/reservations", {"json": body("x", "A", quantity="1")}),  # type: ignore[arg-type]
        ("POST", "/v1/reservations", {"json": body("x", "A", extra=1)}),
        ("POST", "/v1/reservations", {"json": body("x\n", "A")}),
        ("POST", "/v1/reservations", {"json": body("x\u202e", "A")}),
        ("POST", "/v1/reservations", {"json": body("x", "A\u0085")}),
        ("POST", "/v1/reservations", {"content": b"{not json", "headers": JSON}),
        ("POST", "/v1/reservations", {"content": b"x=1", "headers": {"content-type": "text/csv"}}),
        ("POST", "/v1/reservations?debug=1", {"json": body("x", "A")}),
        ("GET", "/v1/stock/A?verbose=true", {}),
        ("GET", "/v1/reservations/" + "x" * 65, {}),
        ("GET", "/v1/stock/" + "S" * 65, {}),
        ("GET", "/v1/stock/RTL%E2%80%AE", {}),
    ]  # fmt: skip
    for method, path, options in odd:
        lean = await pair.lean.client.request(method, path, **options)
        framework = await pair.framework.client.request(method, path, **options)
        assert lean.status_code == 422, (path, options, lean.text)
        same(lean, framework)
    assert await pair.lean.reservation_count() == 0


async def test_the_api_token_is_checked_the_same_way(make_api: AppFactory) -> None:
    async with (
        make_api(api_token=API_TOKEN) as lean,
        make_api(api_token=API_TOKEN, lean=False) as framework,
    ):
        await lean.set_stock("A", 5)
        for headers in ({}, bearer("wrong"), {"Authorization": "Basic abc"}, bearer("")):
            same(
                await lean.client.get("/v1/stock/A", headers=headers),
                await framework.client.get("/v1/stock/A", headers=headers),
            )
        allowed = await lean.client.get("/v1/stock/A", headers=bearer(API_TOKEN))
        same(allowed, await framework.client.get("/v1/stock/A", headers=bearer(API_TOKEN)))
        assert allowed.status_code == 200


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_lean_timestamps_are_the_models_timestamps(epoch_ms: int) -> None:
    assert rfc3339_ms(epoch_ms) == models._rfc3339(models.from_ms(epoch_ms))
