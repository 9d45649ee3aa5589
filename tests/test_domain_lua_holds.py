"""``extend.lua`` and ``release_part.lua`` decide what ``domain.extension`` and
``domain.release_part`` decide: same generated cases, same verdicts, same writes
(as tests/test_domain_lua.py does for confirm and release). Skipped without Redis."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockguard import domain
from stockguard.domain import Line, Reservation, Status
from stockguard.stores.redis.codec import encode_lines, pairs, reservation_from_hash
from stockguard.stores.redis.scripts import script
from test_domain_lua import MARGIN_MS, _verdict, client

__all__ = ["client"]  # the fixture, used by name

LIFETIME_MS = domain.HOLD_LIFETIME_S_MAX * 1000
CALL_MS_MAX = 2_000
"""Redis's clock when the script runs is at most this much after the test read it."""

offsets = st.one_of(st.integers(-(10**9), -MARGIN_MS), st.integers(MARGIN_MS, 10**8))


def _planted(
    r: Any, status: Status, lines: tuple[Line, ...], offset_ms: int, age_ms: int
) -> tuple[Reservation, int, list[str], str]:
    """A reservation written into a throwaway keyspace, and its keys."""
    prefix = r.stockguard_prefix
    seconds, micros = r.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    rid = uuid.uuid4().hex
    created = now_ms - age_ms
    reservation = Reservation(rid, "o-" + rid, None, status, lines, now_ms + offset_ms, created)
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
            "created_at": str(created),
        },
    )
    for line in lines:
        held = line.quantity if status is Status.HELD else 0
        r.hset(stock_prefix + line.sku, mapping={"on_hand": 50, "reserved": held, "version": 0})
    return reservation, now_ms, keys, stock_prefix


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from(list(Status)),
    offset_ms=offsets,
    age_ms=st.integers(0, LIFETIME_MS),
    ttl_s=st.integers(1, 86_400),
)
def test_extend_script_mirrors_domain_extension(
    client: Any, status: Status, offset_ms: int, age_ms: int, ttl_s: int
) -> None:
    r = client
    lines = (Line("A", 2),)
    reservation, now_ms, keys, stock_prefix = _planted(r, status, lines, offset_ms, age_ms)
    reply = r.eval(
        script("extend").source,
        len(keys),
        *keys,
        reservation.id,
        stock_prefix,
        "60000",
        str(ttl_s * 1000),
        str(LIFETIME_MS),
    )
    stored = reservation_from_hash(reservation.id, pairs(reply[1]))
    # What holds.extend answers from the reply.
    lua = stored if stored.status is Status.HELD else domain.extension(stored, ttl_s, 0).answer

    decided = domain.extension(reservation, ttl_s, now_ms)
    assert _verdict(lua) == _verdict(decided.answer)
    assert stored.status is (Status.EXPIRED if decided.expires else status)
    if isinstance(decided.answer, Reservation):
        # Redis's clock ran on a little between the test's read and the script.
        assert 0 <= stored.expires_at_ms - decided.answer.expires_at_ms <= CALL_MS_MAX
        assert stored.expires_at_ms <= max(
            reservation.expires_at_ms, reservation.created_at_ms + LIFETIME_MS
        )
        assert r.zscore(keys[2], reservation.id) in (None, float(stored.expires_at_ms))
    released = 2 if decided.expires else 0
    assert (
        int(r.hget(stock_prefix + "A", "reserved"))
        == (2 if status is Status.HELD else 0) - released
    )


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from(list(Status)),
    offset_ms=offsets,
    held=st.dictionaries(st.sampled_from("ABC"), st.integers(1, 5), min_size=1, max_size=3),
    given_back=st.dictionaries(st.sampled_from("ABCD"), st.integers(1, 6), min_size=1, max_size=3),
)
def test_release_part_script_mirrors_domain_release_part(
    client: Any, status: Status, offset_ms: int, held: dict[str, int], given_back: dict[str, int]
) -> None:
    r = client
    lines = tuple(Line(sku, q) for sku, q in sorted(held.items()))
    back = domain.validate_lines(list(given_back.items()))
    reservation, now_ms, keys, stock_prefix = _planted(r, status, lines, offset_ms, 0)
    reply = r.eval(
        script("release_part").source,
        len(keys),
        *keys,
        reservation.id,
        stock_prefix,
        "60000",
        encode_lines(back),
    )
    stored = reservation_from_hash(reservation.id, pairs(reply[1]))
    # What holds.release_part answers from the reply.
    if reply[0] == "refused":
        lua = domain.release_part(stored, back, int(reply[2])).answer
    elif stored.status is Status.CONFIRMED:
        lua = domain.release_part(stored, back, 0).answer
    else:
        lua = stored

    decided = domain.release_part(reservation, back, now_ms)
    assert _verdict(lua) == _verdict(decided.answer)
    if isinstance(decided.answer, Reservation):
        assert stored == decided.answer
    else:
        assert stored == reservation
    after = {line.sku: line.quantity for line in stored.lines}
    for line in lines:
        reserved = int(r.hget(stock_prefix + line.sku, "reserved"))
        assert reserved == (after.get(line.sku, 0) if stored.status is Status.HELD else 0)
