"""Hostile HTTP input is answered 4xx with problem details, and nothing is written.

Each case sends raw bytes (not httpx's JSON encoder, which would refuse most of them) to
a service holding one SKU, then checks the SKU and the reservation list are untouched.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from .support import API_TOKEN, Api, AppFactory, assert_problem, bearer

GOOD_ITEMS = '[{"sku": "A", "quantity": 1}]'
LARGEST_OPTIONS = {f"axis{a}": [f"v{v}" for v in range(100)] for a in range(8)}
"""As many axes and values as the schema allows: far more variants than allowed."""
BODY_BYTES_MAX = 1_000_000

RESERVE_BODIES = {
    "truncated JSON": b'{"order_id": "o", "items": [',
    "not JSON at all": b"order_id=o&sku=A",
    "a JSON array": b"[]",
    "a JSON string": b'"reserve please"',
    "JSON null": b"null",
    "quantity as a string": b'{"order_id": "o", "items": [{"sku": "A", "quantity": "1"}]}',
    "quantity a fraction": b'{"order_id": "o", "items": [{"sku": "A", "quantity": 1.5}]}',
    "quantity as true": b'{"order_id": "o", "items": [{"sku": "A", "quantity": true}]}',
    "quantity NaN": b'{"order_id": "o", "items": [{"sku": "A", "quantity": NaN}]}',
    "quantity 1e400": b'{"order_id": "o", "items": [{"sku": "A", "quantity": 1e400}]}',
    "quantity 10^30": b'{"order_id": "o", "items": [{"sku": "A", "quantity": 1'
    + b"0" * 30
    + b"}]}",
    "quantity of 5000 digits": b'{"order_id": "o", "items": [{"sku": "A", "quantity": '
    + b"9" * 5000
    + b"}]}",
    "negative quantity": b'{"order_id": "o", "items": [{"sku": "A", "quantity": -1}]}',
    "ttl of 10^20": b'{"order_id": "o", "items": ' + GOOD_ITEMS.encode() + b', "ttl_seconds": '
    b"100000000000000000000}",
    "order_id a number": b'{"order_id": 7, "items": ' + GOOD_ITEMS.encode() + b"}",
    "items an object": b'{"order_id": "o", "items": {"sku": "A", "quantity": 1}}',
    "NUL in order_id": b'{"order_id": "a\\u0000b", "items": ' + GOOD_ITEMS.encode() + b"}",
    "NUL byte in the body": b'{"order_id": "o",\x00 "items": ' + GOOD_ITEMS.encode() + b"}",
    "NUL in sku": b'{"order_id": "o", "items": [{"sku": "A\\u0000", "quantity": 1}]}',
    "lone surrogate": b'{"order_id": "\\ud800", "items": ' + GOOD_ITEMS.encode() + b"}",
    "invalid UTF-8": b'{"order_id": "\xff\xfe", "items": ' + GOOD_ITEMS.encode() + b"}",
    "unknown top-level field": b'{"order_id": "o", "items": '
    + GOOD_ITEMS.encode()
    + b', "price": 1}',
    "unknown item field": b'{"order_id": "o", "items": [{"sku": "A", "quantity": 1, "x": 1}]}',
    "nested a million deep": b"[" * 500_000 + b"]" * 499_999,
    "exactly 1 MB of padding": (
        b'{"order_id": "o", "items": ' + GOOD_ITEMS.encode() + b', "customer_id": "'
    ),
}


def _exactly_one_mb(prefix: bytes) -> bytes:
    return prefix + b"c" * (BODY_BYTES_MAX - len(prefix) - 2) + b'"}'


@pytest.fixture
async def shop(api: Api) -> AsyncIterator[Api]:
    await api.set_stock("A", 5)
    yield api
    level = await api.stock("A")
    assert (level["on_hand"], level["reserved"], level["version"]) == (5, 0, 0)
    assert await api.reservation_count() == 0


@pytest.mark.parametrize("case", sorted(RESERVE_BODIES))
async def test_hostile_reservation_bodies_are_422_problem_details(shop: Api, case: str) -> None:
    body = RESERVE_BODIES[case]
    if case == "exactly 1 MB of padding":
        body = _exactly_one_mb(body)
        assert len(body) == BODY_BYTES_MAX

    answer = await shop.client.post(
        "/v1/reservations", content=body, headers={"content-type": "application/json"}
    )

    assert_problem(answer, 422, "invalid-input")


async def test_a_json_body_sent_as_text_plain_is_422(shop: Api) -> None:
    answer = await shop.client.post(
        "/v1/reservations",
        content=b'{"order_id": "o", "items": ' + GOOD_ITEMS.encode() + b"}",
        headers={"content-type": "text/plain"},
    )

    assert_problem(answer, 422, "invalid-input")


async def test_a_body_over_1_mb_is_413(shop: Api) -> None:
    body = _exactly_one_mb(RESERVE_BODIES["exactly 1 MB of padding"]) + b" "

    answer = await shop.client.post(
        "/v1/reservations", content=body, headers={"content-type": "application/json"}
    )

    assert_problem(answer, 413, "body-too-large")


async def test_a_streamed_body_over_1_mb_without_a_length_is_413(shop: Api) -> None:
    """Chunks of 64 KB with no Content-Length: the limit counts what arrives."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"order_id": "o", "items": [], "customer_id": "'
        for _ in range(20):
            yield b"c" * 65_536

    answer = await shop.client.post(
        "/v1/reservations", content=chunks(), headers={"content-type": "application/json"}
    )

    assert_problem(answer, 413, "body-too-large")


async def test_a_lying_content_length_over_1_mb_is_413_before_reading(shop: Api) -> None:
    answer = await shop.client.post(
        "/v1/reservations",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": "5000000000"},
    )

    assert_problem(answer, 413, "body-too-large")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/stock/A%00B",
        "/v1/stock/" + "S" * 65,
        "/v1/stock/A%0A",
        "/v1/reservations/%00",
        "/v1/reservations/" + "r" * 65 + "/confirm",
        "/v1/products/%7F",
    ],
)
async def test_control_characters_and_overlong_path_values_are_422(shop: Api, path: str) -> None:
    method = "POST" if path.endswith("/confirm") else "GET"

    answer = await shop.client.request(method, path)

    assert_problem(answer, 422, "invalid-input")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/stock/A", b'{"on_hand": 99999999999999999999}'),
        ("PUT", "/v1/stock/A", b'{"on_hand": -5}'),
        ("PUT", "/v1/stock/A", b'{"on_hand": 1, "expected_on_hand": "5"}'),
        ("PUT", "/v1/stock/A", b'{"on_hand": 1, "extra": true}'),
        ("POST", "/v1/stock/A/adjustments", b'{"delta": -99999999999999999999, "reason": "x"}'),
        ("POST", "/v1/stock/A/adjustments", b'{"delta": 1, "reason": "a\\u0000"}'),
        ("POST", "/v1/stock/A/adjustments", b'{"delta": 1}'),
        ("POST", "/v1/products", b'{"name": "T", "options": {"size": "S"}}'),
        ("POST", "/v1/products", b'{"name": "T", "options": {"si\\u0000ze": ["S"]}}'),
        ("POST", "/v1/products", b'{"name": "T", "initial_on_hand": 1e13}'),
        # 10**16 combinations: refused from the axis sizes, before any is built
        ("POST", "/v1/products", json.dumps({"name": "T", "options": LARGEST_OPTIONS}).encode()),
    ],
)
async def test_hostile_admin_bodies_are_422(shop: Api, method: str, path: str, body: bytes) -> None:
    answer = await shop.client.request(
        method, path, content=body, headers={**shop.admin, "content-type": "application/json"}
    )

    assert_problem(answer, 422, "invalid-input")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "bearer wrong",
        "Bearer " + "x" * 10_000,
        "Bearer admin-token-for-tests-but-longer",
        "Token admin-token-for-tests",
    ],
)
async def test_missing_or_invalid_admin_tokens_are_401(
    shop: Api, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    answer = await shop.client.put("/v1/stock/A", json={"on_hand": 1}, headers=headers)

    assert_problem(answer, 401, "unauthorized")


async def test_a_token_with_non_ascii_bytes_is_401_not_an_error(make_api: AppFactory) -> None:
    async with make_api(api_token=API_TOKEN) as api:
        raw = "Bearer tökén".encode()
        answer = await api.client.get("/v1/stock/A", headers=[(b"authorization", raw)])
        assert_problem(answer, 401, "unauthorized")
        assert_problem(await api.client.get("/v1/stock/A", headers=bearer("")), 401)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/reservations?cursor=9223372036854775808",  # 2**63: past a BIGINT
        "/v1/reservations?cursor=9999999999999999999",
        "/v1/reservations?cursor=%C2%B2",  # ², a digit to str.isdigit
        "/v1/reservations?cursor=%D9%A3",  # ٣, a digit to int()
        "/v1/reservations?cursor=-1",
        "/v1/reservations?cursor=",
        "/v1/reservations?cursor=%00",
        "/v1/reservations?order_id=%00",
        "/v1/reservations?customer_id=a%00",
        "/v1/reservations?sku=%00",
        "/v1/stock/A/movements?cursor=9999999999999999999",
        "/v1/stock/A/movements?cursor=9223372036854775808",
        "/v1/stock/A/movements?cursor=%C2%B2",
        "/v1/stock?sku=A%00",
    ],
)
async def test_cursors_and_filters_the_database_cannot_hold_are_422(shop: Api, path: str) -> None:
    answer = await shop.client.get(path, headers=shop.admin)

    body = assert_problem(answer, 422, "invalid-input")
    assert body["errors"], body


async def test_the_largest_cursor_the_schema_admits_is_answered(shop: Api) -> None:
    for path in ("/v1/reservations", "/v1/stock/A/movements"):
        answer = await shop.client.get(
            path, params={"cursor": "9" * 18, "limit": 1}, headers=shop.admin
        )
        assert answer.status_code == 200, answer.text
