"""Hypothesis properties of ``domain.extension`` and ``domain.release_part`` (issue 15):
the pure decisions every store and the Lua scripts carry out."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from stockguard import domain
from stockguard.domain import Line, Reservation, Status

LIFETIME_MS = domain.HOLD_LIFETIME_S_MAX * 1000

skus = st.sampled_from(["A", "B", "C", "D"])


@st.composite
def reservations(draw: st.DrawFn) -> Reservation:
    held = draw(st.dictionaries(skus, st.integers(1, 20), min_size=1, max_size=4))
    created = draw(st.integers(0, 10**6))
    ttl_ms = draw(st.integers(1, LIFETIME_MS))
    return Reservation(
        "r1",
        "o1",
        None,
        draw(st.sampled_from(list(Status))),
        tuple(Line(sku, q) for sku, q in sorted(held.items())),
        created + ttl_ms,
        created,
    )


@st.composite
def give_backs(draw: st.DrawFn) -> tuple[Line, ...]:
    """Lines to give back: often within what is held, often a SKU or a count beyond."""
    chosen = draw(st.dictionaries(skus, st.integers(1, 25), min_size=1, max_size=4))
    return domain.validate_lines(list(chosen.items()))


@settings(max_examples=150, deadline=None)
@given(reservation=reservations(), ttl_s=st.integers(1, 86_400), later_ms=st.integers(0, 10**8))
def test_an_extension_never_shortens_never_passes_the_lifetime_and_only_while_held(
    reservation: Reservation, ttl_s: int, later_ms: int
) -> None:
    now_ms = reservation.created_at_ms + later_ms
    decided = domain.extension(reservation, ttl_s, now_ms)
    past = now_ms >= reservation.expires_at_ms
    if reservation.status is Status.HELD and past:
        assert decided.expires and isinstance(decided.answer, domain.ReservationExpired)
        return
    assert not decided.expires
    if reservation.status is Status.EXPIRED:
        assert isinstance(decided.answer, domain.ReservationExpired)
    elif reservation.status is not Status.HELD:
        assert isinstance(decided.answer, domain.InvalidState)
    else:
        after = decided.result()
        assert after.expires_at_ms >= reservation.expires_at_ms
        assert after.expires_at_ms <= max(
            reservation.expires_at_ms, reservation.created_at_ms + LIFETIME_MS
        )
        assert after.expires_at_ms <= max(reservation.expires_at_ms, now_ms + ttl_s * 1000)
        assert after == dataclasses.replace(reservation, expires_at_ms=after.expires_at_ms)
        assert (decided.expires_at_ms is None) == (after == reservation)
        assert after.expires_at_ms > now_ms  # still held after the write


@settings(max_examples=150, deadline=None)
@given(reservation=reservations(), ttl_s=st.integers(1, 86_400), later_ms=st.integers(0, 10**6))
def test_an_extension_replayed_at_once_answers_the_same_and_writes_nothing(
    reservation: Reservation, ttl_s: int, later_ms: int
) -> None:
    now_ms = reservation.created_at_ms + later_ms
    first = domain.extension(reservation, ttl_s, now_ms)
    if isinstance(first.answer, Reservation):
        again = domain.extension(first.answer, ttl_s, now_ms)
        assert again.answer == first.answer and again.expires_at_ms is None


@settings(max_examples=150, deadline=None)
@given(data=st.data(), reservation=reservations(), later_ms=st.integers(0, 10**8))
def test_a_partial_release_gives_back_exactly_what_it_says_or_nothing(
    data: st.DataObject, reservation: Reservation, later_ms: int
) -> None:
    given_back = data.draw(give_backs())
    now_ms = reservation.created_at_ms + later_ms
    decided = domain.release_part(reservation, given_back, now_ms)
    held = {line.sku: line.quantity for line in reservation.lines}
    if reservation.status is Status.HELD and now_ms >= reservation.expires_at_ms:
        assert decided.ends is Status.EXPIRED and decided.result().status is Status.EXPIRED
        return
    if reservation.status is Status.CONFIRMED:
        assert isinstance(decided.answer, domain.InvalidState) and decided.ends is None
        return
    if reservation.status.is_terminal:
        assert decided.answer == reservation and decided.ends is None and not decided.given
        return
    fits = all(held.get(line.sku, 0) >= line.quantity for line in given_back)
    if not fits:
        assert isinstance(decided.answer, domain.InvalidInput)
        assert decided.ends is None and not decided.given
        return
    after = decided.result()
    units_before = sum(held.values())
    units_back = sum(line.quantity for line in given_back)
    if units_back == units_before:
        assert decided.ends is Status.RELEASED and after.status is Status.RELEASED
        assert after.lines == reservation.lines  # the full release of what remained
        return
    assert decided.ends is None and decided.given == given_back
    assert after.status is Status.HELD and after.expires_at_ms == reservation.expires_at_ms
    assert all(line.quantity > 0 for line in after.lines)  # a line at 0 is removed
    assert sum(line.quantity for line in after.lines) == units_before - units_back
    assert after.lines == domain.remaining_lines(reservation.lines, given_back)
    for line in after.lines:
        back = next((g.quantity for g in given_back if g.sku == line.sku), 0)
        assert line.quantity == held[line.sku] - back


@settings(max_examples=100, deadline=None)
@given(data=st.data(), reservation=reservations())
def test_partial_releases_in_any_steps_end_where_one_full_release_does(
    data: st.DataObject, reservation: Reservation
) -> None:
    """Giving back every unit in steps releases the hold once, at the last step, with
    nothing over-returned in between (the sum of the steps is what was held)."""
    current = dataclasses.replace(reservation, status=Status.HELD)
    now_ms = current.created_at_ms
    returned = 0
    while current.status is Status.HELD:
        line = data.draw(st.sampled_from(current.lines))
        step = Line(line.sku, data.draw(st.integers(1, line.quantity)))
        decided = domain.release_part(current, [step], now_ms)
        if decided.ends is Status.RELEASED:
            returned += sum(q.quantity for q in current.lines)
        else:
            returned += step.quantity
        current = decided.result()
    assert current.status is Status.RELEASED
    assert returned == sum(line.quantity for line in reservation.lines)
