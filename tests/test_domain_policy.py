"""Hypothesis properties of the stock policy's pure decisions (issue 15): safety stock in
``StockLevel.available``, ``customer_refusal`` and the caps inside ``decide_in_order``,
``check_policy_change`` and ``validate_policy`` (docs/design.md#stock-policy)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockguard import domain
from stockguard.domain import Policy, ReserveRequest, StockLevel

skus = st.sampled_from(["A", "B", "C"])
customers = st.sampled_from(["c1", "c2", "c3", None])


@st.composite
def levels(draw: st.DrawFn) -> dict[str, StockLevel]:
    found = {}
    for sku in ("A", "B", "C"):
        backorder_max = draw(st.sampled_from([0, 0, 5, 30]))
        on_hand = draw(st.integers(-backorder_max, 40))
        reserved = draw(st.integers(0, on_hand + backorder_max))
        found[sku] = StockLevel(
            sku,
            on_hand,
            reserved,
            0,
            draw(st.integers(0, 20)),
            draw(st.one_of(st.none(), st.integers(0, 6))),
            backorder_max,
        )
    return found


@st.composite
def requests(draw: st.DrawFn) -> list[ReserveRequest]:
    made = []
    for n in range(draw(st.integers(1, 30))):
        lines = draw(st.dictionaries(skus, st.integers(1, 4), min_size=1, max_size=3))
        made.append(domain.validate_reserve(f"o{n}", list(lines.items()), 60, draw(customers)))
    return made


@settings(max_examples=100, deadline=None)
@given(levels=levels(), batch=requests())
def test_in_order_decisions_never_take_safety_stock_nor_pass_a_cap(
    levels: dict[str, StockLevel], batch: list[ReserveRequest]
) -> None:
    """Whatever arrives, granted units fit in what was available beyond the safety stock,
    and no customer is granted past a cap; a capped SKU without a customer is refused."""
    after, decisions = domain.decide_in_order(levels, batch, {})
    taken: Counter[str] = Counter()
    per_customer: Counter[tuple[str, str]] = Counter()
    for decision in decisions:
        request = decision.request
        capped = [sku for sku in request.skus if levels[sku].customer_max is not None]
        if capped and request.customer_id is None:
            assert isinstance(decision.refused, domain.InvalidInput)
        if not decision.held:
            continue
        for line in request.lines:
            taken[line.sku] += line.quantity
            if request.customer_id is not None:
                per_customer[(request.customer_id, line.sku)] += line.quantity
    for sku, level in levels.items():
        assert taken[sku] <= max(level.available, 0)
        assert after[sku].reserved == level.reserved + taken[sku]
        assert after[sku].safety_stock == level.safety_stock
    for (_, sku), units in per_customer.items():
        cap = levels[sku].customer_max
        assert cap is None or units <= cap


def _beyond_shelf(level: StockLevel) -> int:
    """Units held beyond on_hand less safety stock: what backordered lines must add up to."""
    return max(level.reserved - (level.on_hand - level.safety_stock), 0)


@settings(max_examples=100, deadline=None)
@given(levels=levels(), batch=requests())
def test_backorders_are_bounded_and_every_unit_beyond_the_shelf_is_told(
    levels: dict[str, StockLevel], batch: list[ReserveRequest]
) -> None:
    """docs/design.md#backorders: no batch takes reserved past on_hand + backorder_max (I1),
    a SKU without an allowance never backorders, and the backordered units the granted
    requests were told add up, per SKU, to exactly how far the batch went beyond the
    shelf: none is counted twice and none is missed, whatever the order."""
    after, decisions = domain.decide_in_order(levels, batch, {})
    told: Counter[str] = Counter()
    for decision in decisions:
        if not decision.held:
            assert not decision.backordered
            continue
        quantities = {line.sku: line.quantity for line in decision.request.lines}
        for sku, units in decision.backordered.items():
            assert 0 < units <= quantities[sku]
            assert levels[sku].backorder_max > 0
            told[sku] += units
    for sku, level in levels.items():
        assert after[sku].reserved <= max(level.on_hand + level.backorder_max, level.reserved)
        assert told[sku] == _beyond_shelf(after[sku]) - _beyond_shelf(level)


def test_backordered_units_of_one_hold_straddle_the_shelf_edge() -> None:
    level = StockLevel("A", 3, 1, 0, 0, None, 10)  # 2 on the shelf, 10 allowed beyond
    assert [level.backordered(q) for q in (1, 2, 3, 5)] == [0, 0, 1, 3]
    assert level.available == 12
    owed = StockLevel("A", -4, 2, 0, 0, None, 10)  # 4 sold beyond, 2 more held beyond
    assert owed.backordered(1) == 1
    assert owed.available == 4


@settings(max_examples=100, deadline=None)
@given(levels=levels(), batch=requests())
def test_a_batch_decides_as_the_requests_one_by_one(
    levels: dict[str, StockLevel], batch: list[ReserveRequest]
) -> None:
    """The caps' running counts make a batch equal to deciding each request alone on what
    the ones before it left (what a strategy without batches does, row locked)."""
    _, together = domain.decide_in_order(levels, batch, {})
    current = dict(levels)
    units: dict[tuple[str, str], int] = {}
    for request, decision in zip(batch, together, strict=True):
        refused = domain.customer_refusal(current, units, request)
        if refused is not None:
            assert type(decision.refused) is type(refused)
            continue
        short = domain.shortfalls(current, request.lines)
        assert decision.held == (not short)
        if not short:
            current = domain.hold(current, request.lines)
            domain.count_hold(units, request)


@given(
    level=levels(),
    customer=st.sampled_from(["c1", "c2"]),
    have=st.integers(0, 8),
    wanted=st.integers(1, 8),
)
def test_customer_refusal_is_exactly_the_cap(
    level: dict[str, StockLevel], customer: str, have: int, wanted: int
) -> None:
    request = domain.validate_reserve("o", [("A", wanted)], 60, customer)
    refused = domain.customer_refusal(level, {(customer, "A"): have}, request)
    cap = level["A"].customer_max
    if cap is None or have + wanted <= cap:
        assert refused is None
    else:
        assert isinstance(refused, domain.CustomerLimit)
        assert (refused.limit, refused.units, refused.requested) == (cap, have, wanted)


def test_available_keeps_safety_stock_out_and_may_be_negative() -> None:
    assert StockLevel("A", 10, 3, 0).available == 7
    assert StockLevel("A", 10, 3, 0, 5).available == 2
    assert StockLevel("A", 10, 8, 0, 5).available == -3


policies = st.builds(
    Policy,
    st.integers(0, 5),
    st.just(0),
    st.one_of(st.none(), st.integers(0, 5)),
    st.one_of(st.none(), st.integers(0, 5)),
)


@given(current=policies, expected=st.one_of(st.none(), policies))
def test_a_policy_write_applies_only_to_the_policy_seen(
    current: Policy, expected: Policy | None
) -> None:
    if expected is None or expected == current:
        domain.check_policy_change("A", current, expected)
    else:
        with pytest.raises(domain.PolicyChanged) as changed:
            domain.check_policy_change("A", current, expected)
        assert changed.value.current == current


@given(
    safety=st.integers(-3, 3),
    backorder=st.integers(-1, 2),
    cap=st.one_of(st.none(), st.integers(-2, 3)),
    threshold=st.one_of(st.none(), st.integers(-2, 3)),
)
def test_validate_policy_refuses_every_out_of_range_field(
    safety: int, backorder: int, cap: int | None, threshold: int | None
) -> None:
    policy = Policy(safety, backorder, cap, threshold)
    valid = (
        safety >= 0
        and backorder >= 0
        and (cap is None or cap >= 0)
        and (threshold is None or threshold >= 0)
    )
    if valid:
        assert domain.validate_policy(policy) == policy
    else:
        with pytest.raises(domain.InvalidInput):
            domain.validate_policy(policy)
