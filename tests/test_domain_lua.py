"""The Lua scripts decide what ``stockguard.domain`` decides: same cases, same verdicts.

``confirm.lua`` and ``release.lua`` mirror ``domain.ending`` (a hold past expiry ends as
expired and its confirm is refused; docs/design.md#one-clock). Hypothesis generates a
reservation (status, expiry relative to Redis's clock) and a target; the script runs on a
throwaway keyspace of the shared Redis, the Python decision runs on the same values, and
the final status, the verdict and the stock moved must agree. Skipped without Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REDIS_URL, service_unreachable
from stockguard import domain
from stockguard.domain import Line, Reservation, Status
from stockguard.stores.redis.codec import encode_lines, pairs, reservation_from_hash
from stockguard.stores.redis.scripts import script

redis = pytest.importorskip("redis")

MARGIN_MS = 5_000
"""Expiries this far from Redis's clock: the call can't cross them while it runs."""


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    connection = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        connection.ping()
    except redis.exceptions.ConnectionError as error:
        service_unreachable("Redis", error)
    prefix = f"sg-test-lua-{uuid.uuid4().hex[:12]}:"
    connection.stockguard_prefix = prefix
    yield connection
    for key in connection.scan_iter(match=prefix + "*"):
        connection.delete(key)
    connection.close()


def _verdict(answer: Reservation | domain.StockguardError) -> tuple[str, str]:
    if isinstance(answer, domain.StockguardError):
        return ("error", answer.kind)
    return ("ok", answer.status.value)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from(list(Status)),
    target=st.sampled_from([Status.CONFIRMED, Status.RELEASED]),
    offset_ms=st.one_of(st.integers(-(10**9), -MARGIN_MS), st.integers(MARGIN_MS, 10**9)),
    quantity=st.integers(1, 5),
)
def test_confirm_and_release_scripts_mirror_domain_ending(
    client: Any, status: Status, target: Status, offset_ms: int, quantity: int
) -> None:
    r = client  # a redis.Redis
    prefix = r.stockguard_prefix
    seconds, micros = r.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    rid = uuid.uuid4().hex
    lines = (Line("A", quantity),)
    reservation = Reservation(rid, "o-" + rid, None, status, lines, now_ms + offset_ms, now_ms)
    reserved = quantity if status is Status.HELD else 0
    stock_prefix = f"{prefix}stock:{rid}:"
    keys = [f"{prefix}loaded", f"{prefix}r:{rid}", f"{prefix}due", f"{prefix}events"]
    r.set(keys[0], "1")
    r.hset(
        keys[1],
        mapping={
            "order_id": reservation.order_id,
            "customer_id": "",
            "status": status.value,
            "lines": encode_lines(lines),
            "expires_at": str(reservation.expires_at_ms),
            "created_at": str(now_ms),
        },
    )
    r.hset(stock_prefix + "A", mapping={"on_hand": 10, "reserved": reserved, "version": 0})
    name = "confirm" if target is Status.CONFIRMED else "release"
    reply = r.eval(script(name).source, len(keys), *keys, rid, stock_prefix, "60000")
    assert reply[0] == "found"
    stored = reservation_from_hash(rid, pairs(reply[1]))
    # What the Redis strategy answers from the script's reply (holds.end).
    try:
        domain.check_transition(stored, target, stored.expires_at_ms)
        lua = _verdict(stored)
    except domain.StockguardError as refused:
        lua = _verdict(refused)
    level = r.hgetall(stock_prefix + "A")

    ending = domain.ending(reservation, target, now_ms)
    assert lua == _verdict(ending.answer)
    assert stored.status is (ending.writes or status)
    sold = quantity if ending.writes is Status.CONFIRMED else 0
    released = quantity if ending.writes is not None else 0
    assert int(level["on_hand"]) == 10 - sold
    assert int(level["reserved"]) == reserved - released
