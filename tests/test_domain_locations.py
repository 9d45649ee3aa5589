"""Stock per location and the allocation policy (issue 14, docs/locations.md): Hypothesis
properties of ``allocate``, the batch in arrival order, totals and settling, each checked
against a brute force or a replay on small cases, plus worked examples."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockguard import domain
from stockguard.domain import Line, ReserveRequest, Shortfall, StockLevel
from stockguard.domain.locations import (
    DEFAULT_LOCATION_CODE,
    LOCATION_CODE_LEN_MAX,
    LOCATION_NAME_LEN_MAX,
    LOCATION_PRIORITY_MAX,
    Allocation,
    AllocationPolicy,
    AllocationRequest,
    Location,
    LocationLevel,
    SkuTotals,
    allocate,
    decide_in_order_by_location,
    settle,
    sku_totals,
    validate_allocation_request,
    validate_location,
)

CODES = ("L0", "L1", "L2", "L3")
SKUS = ("A", "B")
EXAMPLES_MAX = 100
"""Examples per property of one line; with ``BATCH_EXAMPLES_MAX`` the whole file stays
well under 10 s in CI (about 4 s here). The ``long`` Hypothesis profile (tests/conftest.py)
runs deeper."""
BATCH_EXAMPLES_MAX = 40
"""Examples per property of a batch: each draws up to 12 requests, ~15 ms an example."""

# ---------------------------------------------------------------------------- strategies

policies = st.sampled_from(list(AllocationPolicy))


@st.composite
def shops(draw: st.DrawFn) -> dict[str, Location]:
    """4 locations, mostly active (how many a SKU is stocked at varies by its levels);
    priorities drawn so that ties are common: the tie keys are only tested by ties."""
    codes = draw(st.permutations(CODES))
    return {
        code: Location(
            code,
            f"shop {code}",
            draw(st.sampled_from([0, 0, 1, 2])),
            draw(st.sampled_from([True, True, True, False])),
        )
        for code in codes
    }


@st.composite
def level_at(draw: st.DrawFn, sku: str, code: str) -> LocationLevel:
    backorder_max = draw(st.sampled_from([0, 0, 3]))
    on_hand = draw(st.sampled_from([5, 8, 3, 2, 1, 0]))
    reserved = draw(st.sampled_from([0, 1, 0, on_hand + backorder_max]))
    reserved = min(reserved, on_hand + backorder_max)
    safety = draw(st.sampled_from([0, 0, 1, 3]))
    return LocationLevel(
        sku, code, on_hand, reserved, draw(st.integers(0, 3)), safety, backorder_max
    )


@st.composite
def stocked(draw: st.DrawFn, sku: str, codes: list[str]) -> dict[str, LocationLevel]:
    """A SKU's levels: most locations stock it, some do not (no level at all)."""
    return {
        code: draw(level_at(sku, code))
        for code in codes
        if draw(st.sampled_from([True, True, True, False]))
    }


LineCase = tuple[
    dict[str, Location], dict[str, LocationLevel], Line, AllocationPolicy, bool, str | None
]
"""A shop, one SKU's levels, a line, and the line's policy, split and pinned location."""


@st.composite
def one_line(draw: st.DrawFn) -> LineCase:
    shop = draw(shops())
    levels = draw(stocked("A", list(shop)))
    pinned = draw(st.sampled_from([None, None, None, *shop]))
    return (
        shop,
        levels,
        Line("A", draw(st.integers(1, 10))),
        draw(policies),
        draw(st.booleans()),
        pinned,
    )


def permitted(
    shop: dict[str, Location], levels: dict[str, LocationLevel], pinned: str | None
) -> list[LocationLevel]:
    return [
        level
        for code, level in levels.items()
        if shop[code].active and (pinned is None or code == pinned)
    ]


def fits_by_brute_force(
    shop: dict[str, Location],
    levels: dict[str, LocationLevel],
    line: Line,
    split: bool,
    pinned: str | None,
) -> bool:
    """Whether any way at all of drawing ``line`` from the permitted locations, within each
    one's available, fills it. Not split: some one location holds it. Split: every vector
    of units (0 to available at each location) is tried, folded location by location into
    the set of totals reachable so far, as a vector's units only matter through their sum."""
    free = [max(level.available, 0) for level in permitted(shop, levels, pinned)]
    if not split:
        return any(units >= line.quantity for units in free)
    reachable = {0}
    for units in free:
        reachable = {
            total + more
            for total, more in itertools.product(reachable, range(units + 1))
            if total + more <= line.quantity
        }
    return line.quantity in reachable


def expected_order(
    shop: dict[str, Location], levels: list[LocationLevel], policy: AllocationPolicy
) -> list[LocationLevel]:
    """The documented keys (docs/locations.md#ties), written again independently."""
    if policy is AllocationPolicy.PRIORITY:
        return sorted(levels, key=lambda lv: (shop[lv.location].priority, lv.location))
    return sorted(
        levels, key=lambda lv: (-max(lv.available, 0), shop[lv.location].priority, lv.location)
    )


# ---------------------------------------------------------------------------- allocate


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(case=one_line())
def test_allocate_stays_within_available_and_the_line_s_constraints(
    case: LineCase,
) -> None:
    """Never more than available per location, never an inactive location, only the pinned
    one when pinned, one location when not split, each location at most once, the
    allocations summing to the line; and it fills the line exactly when a brute force
    finds some way to, its shortfall naming what the constraints left available."""
    shop, levels, line, policy, split, pinned = case
    outcome = allocate(levels, shop, line, policy, split, pinned)
    feasible = fits_by_brute_force(shop, levels, line, split, pinned)
    if isinstance(outcome, Shortfall):
        assert not feasible
        free = [max(level.available, 0) for level in permitted(shop, levels, pinned)]
        assert outcome == Shortfall(
            "A", line.quantity, sum(free) if split else max(free, default=0)
        )
        return
    assert feasible
    assert sum(a.quantity for a in outcome) == line.quantity
    codes = [a.location for a in outcome]
    assert len(codes) == len(set(codes))
    if not split:
        assert len(outcome) == 1
    for allocation in outcome:
        level = levels[allocation.location]
        assert shop[allocation.location].active
        assert pinned is None or allocation.location == pinned
        assert 0 < allocation.quantity <= level.available
        assert allocation.backordered == level.backordered(allocation.quantity)


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(case=one_line())
def test_the_policy_order_is_followed_and_the_shelf_comes_before_the_allowance(
    case: LineCase,
) -> None:
    """``priority`` fills in priority order, ``most_available`` from the most available
    first, ties per the documented key (priority, then code). Split: a location's shelf is
    drawn from only once every earlier location's shelf is used up, and an allowance only
    once every shelf and every earlier allowance is. Not split: the first location whose
    shelf covers the line, else the first whose available does."""
    shop, levels, line, policy, split, pinned = case
    outcome = allocate(levels, shop, line, policy, split, pinned)
    if isinstance(outcome, Shortfall):
        return
    order = expected_order(shop, permitted(shop, levels, pinned), policy)
    got = {a.location: a for a in outcome}
    if not split:
        shelf_first = [lv for lv in order if lv.shelf >= line.quantity]
        chosen = (
            shelf_first[0]
            if shelf_first
            else next(lv for lv in order if lv.available >= line.quantity)
        )
        assert list(got) == [chosen.location]
        return

    def shelf_units(lv: LocationLevel) -> int:
        a = got.get(lv.location)
        return 0 if a is None else a.quantity - a.backordered

    def allowance_units(lv: LocationLevel) -> int:
        a = got.get(lv.location)
        return 0 if a is None else a.backordered

    from_shelves = [lv.location for lv in order if shelf_units(lv)]
    beyond_only = [lv.location for lv in order if allowance_units(lv) and not shelf_units(lv)]
    assert list(got) == from_shelves + beyond_only  # the order drawn: shelves, then beyond
    for i, later in enumerate(order):
        for earlier in order[:i]:
            if shelf_units(later):
                assert shelf_units(earlier) == earlier.shelf
            if allowance_units(later):
                assert allowance_units(earlier) == max(earlier.available, 0) - earlier.shelf
        if allowance_units(later):
            assert all(shelf_units(lv) == lv.shelf for lv in order)


@st.composite
def open_shops(
    draw: st.DrawFn,
) -> tuple[dict[str, Location], dict[str, LocationLevel], Line, bool]:
    """Every location active and stocking the SKU, no backorders, no pins: the cases the
    policies' own orders decide, with availables spread apart by reserved and safety stock
    (a policy reading on_hand instead of available picks another location here)."""
    shop = {code: Location(code, code, draw(st.sampled_from([0, 0, 1]))) for code in CODES}
    levels = {}
    for code in CODES:
        on_hand = draw(st.integers(0, 9))
        reserved = draw(st.integers(0, on_hand))
        levels[code] = LocationLevel("A", code, on_hand, reserved, 0, draw(st.integers(0, 2)))
    return shop, levels, Line("A", draw(st.integers(1, 6))), draw(st.booleans())


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(case=open_shops())
def test_priority_fills_in_priority_order(
    case: tuple[dict[str, Location], dict[str, LocationLevel], Line, bool],
) -> None:
    """Split: every location before the last one drawn from (by priority, then code) is
    drained and none after it is touched. Not split: the first location, in that order,
    that holds the whole line."""
    shop, levels, line, split = case
    outcome = allocate(levels, shop, line, AllocationPolicy.PRIORITY, split)
    if isinstance(outcome, Shortfall):
        return
    order = expected_order(shop, list(levels.values()), AllocationPolicy.PRIORITY)
    if not split:
        chosen = next(lv for lv in order if lv.available >= line.quantity)
        assert outcome == (Allocation(chosen.location, line.quantity),)
        return
    expected, left = [], line.quantity
    for lv in order:
        units = min(max(lv.available, 0), left)
        if units:
            expected.append(Allocation(lv.location, units))
            left -= units
    assert outcome == tuple(expected)


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(case=open_shops())
def test_most_available_picks_the_location_with_most_available(
    case: tuple[dict[str, Location], dict[str, LocationLevel], Line, bool],
) -> None:
    """The first location drawn from has the most available; ties go to the lower
    priority number, then the lower code. Not split: the line goes whole to the most
    available location that holds it, which is the most available one."""
    shop, levels, line, split = case
    outcome = allocate(levels, shop, line, AllocationPolicy.MOST_AVAILABLE, split)
    if isinstance(outcome, Shortfall):
        return
    most = max(lv.available for lv in levels.values())
    tied = [lv for lv in levels.values() if lv.available == most]
    first = min(tied, key=lambda lv: (shop[lv.location].priority, lv.location))
    assert outcome[0].location == first.location
    if not split:
        assert outcome == (Allocation(first.location, line.quantity),)


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(case=one_line(), seed=st.integers(0, 2**16))
def test_allocate_does_not_depend_on_the_order_of_its_mappings(
    case: LineCase,
    seed: int,
) -> None:
    """Deterministic: the same rows read in another order (another query plan, another
    backend) allocate the same way, ties included."""
    shop, levels, line, policy, split, pinned = case
    shuffled = list(levels.items())
    random.Random(seed).shuffle(shuffled)
    locations = list(shop.items())
    random.Random(seed + 1).shuffle(locations)
    again = allocate(dict(shuffled), dict(locations), line, policy, split, pinned)
    assert again == allocate(levels, shop, line, policy, split, pinned)


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(case=one_line())
def test_a_split_unpinned_line_fits_exactly_when_the_totals_say_so(
    case: LineCase,
) -> None:
    """The totals' available is what a split hold can take: the figure the API shows is
    never a promise the allocation breaks. Totals sum over active locations only."""
    shop, levels, line, policy, _, _ = case
    totals = sku_totals("A", levels, shop)
    active = [lv for code, lv in levels.items() if shop[code].active]
    assert totals.on_hand == sum(lv.on_hand for lv in active)
    assert totals.reserved == sum(lv.reserved for lv in active)
    outcome = allocate(levels, shop, line, policy, True, None)
    assert isinstance(outcome, Shortfall) == (line.quantity > totals.available)


# ---------------------------------------------------------------------------- the batch


@st.composite
def batches(
    draw: st.DrawFn,
) -> tuple[dict[str, Location], dict[str, dict[str, LocationLevel]], list[AllocationRequest]]:
    shop = draw(shops())
    levels = {sku: draw(stocked(sku, list(shop))) for sku in SKUS}
    requests = []
    for n in range(draw(st.integers(0, 12))):
        lines = draw(st.dictionaries(st.sampled_from(SKUS), st.integers(1, 5), min_size=1))
        request = domain.validate_reserve(f"o{n}", list(lines.items()), 60)
        pin = draw(
            st.one_of(
                st.none(), st.tuples(st.sampled_from(request.skus), st.sampled_from(list(shop)))
            )
        )
        requests.append(
            validate_allocation_request(
                request, shop, draw(policies), draw(st.booleans()), dict([pin]) if pin else None
            )
        )
    return shop, levels, requests


Batch = tuple[dict[str, Location], dict[str, dict[str, LocationLevel]], list[AllocationRequest]]


@settings(max_examples=BATCH_EXAMPLES_MAX, deadline=None)
@given(batch=batches())
def test_a_batch_decides_as_the_requests_one_by_one_on_what_the_previous_left(
    batch: Batch,
) -> None:
    """First come, first served: deciding the batch equals allocating each request alone,
    all or nothing, on the levels the requests before it left; a refused request at its
    turn could not have been filled under its own constraints (brute force: some line of
    it fits in no way at all; a request's lines name distinct SKUs, so they never compete
    for one level and the request fits exactly when each line does)."""
    shop, levels, requests = batch
    after, decisions = decide_in_order_by_location(levels, shop, requests)
    current = {sku: dict(by_location) for sku, by_location in levels.items()}
    for located, decision in zip(requests, decisions, strict=True):
        assert decision.request is located
        alone = {
            line.sku: allocate(
                current[line.sku],
                shop,
                line,
                located.policy,
                located.split,
                located.pinned.get(line.sku),
            )
            for line in located.request.lines
        }
        short = tuple(o for o in alone.values() if isinstance(o, Shortfall))
        assert decision.shortfall == short
        fits = [
            fits_by_brute_force(
                shop, current[line.sku], line, located.split, located.pinned.get(line.sku)
            )
            for line in located.request.lines
        ]
        if not decision.held:
            assert not all(fits) and decision.allocations == {}
            continue
        assert all(fits) and decision.allocations == alone
        for sku, allocations in decision.allocations.items():
            for a in allocations:
                level = current[sku][a.location]
                current[sku][a.location] = LocationLevel(
                    sku,
                    a.location,
                    level.on_hand,
                    level.reserved + a.quantity,
                    level.version + 1,
                    level.safety_stock,
                    level.backorder_max,
                )
    assert after == current


@settings(max_examples=BATCH_EXAMPLES_MAX, deadline=None)
@given(batch=batches())
def test_a_batch_keeps_i1_per_location_and_reserved_is_what_it_granted(batch: Batch) -> None:
    """Per level: reserved rises by exactly the granted allocations there, never past
    on_hand + backorder_max - safety_stock beyond what it held already; an inactive
    location's levels are never touched; a held request's lines tell the backordered
    units of their allocations."""
    shop, levels, requests = batch
    after, decisions = decide_in_order_by_location(levels, shop, requests)
    granted: dict[tuple[str, str], int] = {}
    for decision in decisions:
        for sku, allocations in decision.allocations.items():
            for a in allocations:
                granted[(sku, a.location)] = granted.get((sku, a.location), 0) + a.quantity
        if decision.held:
            for line in decision.lines:
                assert line.backordered == sum(
                    a.backordered for a in decision.allocations[line.sku]
                )
    for sku, by_location in levels.items():
        assert set(after[sku]) == set(by_location)
        for code, before in by_location.items():
            now = after[sku][code]
            units = granted.get((sku, code), 0)
            assert now.reserved == before.reserved + units
            if units:
                assert shop[code].active
                assert now.available >= 0
            else:
                assert now == before


@settings(max_examples=BATCH_EXAMPLES_MAX, deadline=None)
@given(batch=batches(), sold=st.booleans())
def test_settling_gives_back_exactly_the_allocated_units(batch: Batch, sold: bool) -> None:
    """Ending every held request of a batch, in any order, moves each level by exactly its
    allocations (``settle`` reads no location: whatever became inactive meanwhile settles
    the same): a release or expiry leaves
    reserved as it was before the batch, a confirm also lowers on_hand by what it sold
    there."""
    shop, levels, requests = batch
    after, decisions = decide_in_order_by_location(levels, shop, requests)
    current = {sku: dict(by_location) for sku, by_location in after.items()}
    sold_at: dict[tuple[str, str], int] = {}
    for decision in reversed(decisions):
        changed = settle(current, decision.allocations, sold)
        for sku, by_location in changed.items():
            current[sku].update(by_location)
        for sku, allocations in decision.allocations.items():
            for a in allocations:
                sold_at[(sku, a.location)] = sold_at.get((sku, a.location), 0) + a.quantity
    for sku, by_location in levels.items():
        for code, before in by_location.items():
            now = current[sku][code]
            assert now.reserved == before.reserved
            assert now.on_hand == before.on_hand - (sold_at.get((sku, code), 0) if sold else 0)


@st.composite
def one_location_batches(
    draw: st.DrawFn,
) -> tuple[dict[str, StockLevel], list[ReserveRequest], dict[str, int | None]]:
    """Stock as it is before locations (safety stock, backorders, caps) and a batch of
    requests with customers, for the shop that keeps everything at one location."""
    found = {}
    for sku in SKUS:
        backorder_max = draw(st.sampled_from([0, 0, 4]))
        on_hand = draw(st.integers(0, 10))
        reserved = draw(st.integers(0, on_hand + backorder_max))
        found[sku] = StockLevel(
            sku,
            on_hand,
            reserved,
            draw(st.integers(0, 3)),
            draw(st.integers(0, 2)),
            draw(st.sampled_from([None, None, 4])),
            backorder_max,
        )
    requests = []
    for n in range(draw(st.integers(0, 12))):
        lines = draw(st.dictionaries(st.sampled_from(SKUS), st.integers(1, 5), min_size=1))
        customer = draw(st.sampled_from(["c1", "c2", None]))
        requests.append(domain.validate_reserve(f"o{n}", list(lines.items()), 60, customer))
    return found, requests, {sku: level.customer_max for sku, level in found.items()}


@settings(max_examples=BATCH_EXAMPLES_MAX, deadline=None)
@given(batch=one_location_batches(), policy=policies, split=st.booleans())
def test_a_one_location_shop_decides_exactly_as_before_locations(
    batch: tuple[dict[str, StockLevel], list[ReserveRequest], dict[str, int | None]],
    policy: AllocationPolicy,
    split: bool,
) -> None:
    """Issue 14's compatibility promise, in the domain: with every level at the default
    location, any policy and split decide each request, its shortfall, its backordered
    units and the levels after exactly as ``decide_in_order`` does, caps included."""
    levels, requests, caps = batch
    shop = {DEFAULT_LOCATION_CODE: Location(DEFAULT_LOCATION_CODE, "Default")}
    located = {
        sku: {
            DEFAULT_LOCATION_CODE: LocationLevel(
                sku,
                DEFAULT_LOCATION_CODE,
                lv.on_hand,
                lv.reserved,
                lv.version,
                lv.safety_stock,
                lv.backorder_max,
            )
        }
        for sku, lv in levels.items()
    }
    before_after, before = domain.decide_in_order(levels, requests, {})
    after, decisions = decide_in_order_by_location(
        located,
        shop,
        [AllocationRequest(r, policy, split) for r in requests],
        units={},
        customer_max=caps,
    )
    for old, new in zip(before, decisions, strict=True):
        assert (old.held, old.shortfall, type(old.refused)) == (
            new.held,
            new.shortfall,
            type(new.refused),
        )
        if new.held:
            assert {line.sku: line.backordered for line in new.lines if line.backordered} == dict(
                old.backordered
            )
    for sku, lv in before_after.items():
        now = after[sku][DEFAULT_LOCATION_CODE]
        assert (now.on_hand, now.reserved, now.version) == (lv.on_hand, lv.reserved, lv.version)


def test_settling_more_than_a_level_holds_contradicts_i2() -> None:
    levels = {"A": {"L0": LocationLevel("A", "L0", 5, 1, 0)}}
    with pytest.raises(ValueError, match="settling 2 of 1"):
        settle(levels, {"A": (Allocation("L0", 2),)}, sold=False)
    with pytest.raises(ValueError, match="without a level"):
        settle(levels, {"A": (Allocation("L9", 1),)}, sold=True)


# ---------------------------------------------------------------------------- worked examples

WAREHOUSE = Location("WH", "Warehouse", 0)
STORE = Location("ST", "High Street store", 1)
SHOP = {"WH": WAREHOUSE, "ST": STORE}


def levels(wh: int, st_: int, **extra: int) -> dict[str, LocationLevel]:
    return {
        "WH": LocationLevel("A", "WH", wh, 0, 0, **extra),
        "ST": LocationLevel("A", "ST", st_, 0, 0),
    }


class TestWorkedExamples:
    def test_priority_drains_the_warehouse_then_the_store(self) -> None:
        assert allocate(levels(3, 5), SHOP, Line("A", 4)) == (
            Allocation("WH", 3),
            Allocation("ST", 1),
        )

    def test_most_available_starts_at_the_fuller_location(self) -> None:
        outcome = allocate(levels(3, 5), SHOP, Line("A", 4), AllocationPolicy.MOST_AVAILABLE)
        assert outcome == (Allocation("ST", 4),)

    def test_most_available_ties_go_to_the_higher_priority_then_the_code(self) -> None:
        outcome = allocate(levels(5, 5), SHOP, Line("A", 1), AllocationPolicy.MOST_AVAILABLE)
        assert outcome == (Allocation("WH", 1),)
        even = {"WH": Location("WH", "Warehouse", 1), "ST": STORE}
        outcome = allocate(levels(5, 5), even, Line("A", 1), AllocationPolicy.MOST_AVAILABLE)
        assert outcome == (Allocation("ST", 1),)  # "ST" < "WH"

    def test_without_split_a_line_the_shop_could_fill_in_two_places_is_refused(self) -> None:
        outcome = allocate(levels(3, 5), SHOP, Line("A", 6), split=False)
        assert outcome == Shortfall("A", 6, 5)
        assert allocate(levels(3, 5), SHOP, Line("A", 5), split=False) == (Allocation("ST", 5),)

    def test_click_and_collect_draws_only_from_its_store(self) -> None:
        assert allocate(levels(9, 1), SHOP, Line("A", 1), pinned="ST") == (Allocation("ST", 1),)
        assert allocate(levels(9, 1), SHOP, Line("A", 2), pinned="ST") == Shortfall("A", 2, 1)
        with pytest.raises(domain.InvalidInput):
            allocate(levels(9, 1), SHOP, Line("A", 1), pinned="NOWHERE")

    def test_the_shelf_of_a_later_location_comes_before_a_backorder(self) -> None:
        """The warehouse has nothing on the shelf but may sell 10 beyond; the store has 2."""
        outcome = allocate(levels(0, 2, backorder_max=10), SHOP, Line("A", 5))
        assert outcome == (Allocation("ST", 2), Allocation("WH", 3, backordered=3))

    def test_without_split_a_later_shelf_comes_before_a_backorder(self) -> None:
        """The warehouse could take the whole line on its allowance; the store has it."""
        outcome = allocate(levels(0, 3, backorder_max=10), SHOP, Line("A", 3), split=False)
        assert outcome == (Allocation("ST", 3),)
        outcome = allocate(levels(0, 3, backorder_max=10), SHOP, Line("A", 4), split=False)
        assert outcome == (Allocation("WH", 4, backordered=4),)

    def test_a_deactivated_location_stops_selling_but_its_holds_settle(self) -> None:
        after, (first,) = decide_in_order_by_location(
            {"A": levels(3, 5)},
            SHOP,
            [AllocationRequest(domain.validate_reserve("o1", [("A", 4)]))],
        )
        assert first.allocations == {"A": (Allocation("WH", 3), Allocation("ST", 1))}
        closed = {"WH": Location("WH", "Warehouse", 0, active=False), "ST": STORE}
        assert sku_totals("A", after["A"], closed) == SkuTotals("A", 5, 1, 4)
        _, (second,) = decide_in_order_by_location(
            after, closed, [AllocationRequest(domain.validate_reserve("o2", [("A", 5)]))]
        )
        assert second.shortfall == (Shortfall("A", 5, 4),)
        back = settle(after, first.allocations, sold=True)
        assert back["A"]["WH"].on_hand == 0 and back["A"]["WH"].reserved == 0
        assert back["A"]["ST"].on_hand == 4 and back["A"]["ST"].reserved == 0

    def test_per_customer_caps_count_units_from_every_location(self) -> None:
        cap_request = domain.validate_reserve("o1", [("A", 3)], 60, "c1")
        again = domain.validate_reserve("o2", [("A", 1)], 60, "c1")
        _, decisions = decide_in_order_by_location(
            {"A": levels(2, 5)},
            SHOP,
            [AllocationRequest(cap_request), AllocationRequest(again)],
            units={},
            customer_max={"A": 3},
        )
        assert decisions[0].held and len(decisions[0].allocations["A"]) == 2
        assert isinstance(decisions[1].refused, domain.CustomerLimit)


# ---------------------------------------------------------------------------- validation


class TestValidation:
    def test_a_location_within_every_limit(self) -> None:
        code = "x" * LOCATION_CODE_LEN_MAX
        name = "n" * LOCATION_NAME_LEN_MAX
        assert validate_location(code, name, LOCATION_PRIORITY_MAX, False) == Location(
            code, name, LOCATION_PRIORITY_MAX, False
        )

    @pytest.mark.parametrize(
        ("code", "name", "priority", "active", "field"),
        [
            ("", "n", 0, True, "code"),
            ("x" * (LOCATION_CODE_LEN_MAX + 1), "n", 0, True, "code"),
            ("a\u202eb", "n", 0, True, "code"),
            (7, "n", 0, True, "code"),
            ("WH", "", 0, True, "name"),
            ("WH", "n" * (LOCATION_NAME_LEN_MAX + 1), 0, True, "name"),
            ("WH", "tab\there", 0, True, "name"),
            ("WH", "n", -1, True, "priority"),
            ("WH", "n", LOCATION_PRIORITY_MAX + 1, True, "priority"),
            ("WH", "n", True, True, "priority"),
            ("WH", "n", 0, 1, "active"),
        ],
    )
    def test_every_out_of_range_field_is_refused(
        self, code: object, name: object, priority: object, active: object, field: str
    ) -> None:
        with pytest.raises(domain.InvalidInput) as refused:
            validate_location(code, name, priority, active)
        assert refused.value.field == field

    def test_request_options(self) -> None:
        request = domain.validate_reserve("o", [("A", 1), ("B", 2)])
        checked = validate_allocation_request(request, SHOP, "most_available", False, {"B": "ST"})
        assert (checked.policy, checked.split, dict(checked.pinned)) == (
            AllocationPolicy.MOST_AVAILABLE,
            False,
            {"B": "ST"},
        )
        assert validate_allocation_request(request, SHOP).policy is AllocationPolicy.PRIORITY
        for policy, split, pinned, field in [
            ("nearest", True, None, "allocation_policy"),
            (["priority"], True, None, "allocation_policy"),
            ("priority", "yes", None, "split"),
            ("priority", True, {"C": "ST"}, "items"),
            ("priority", True, {"B": "NOWHERE"}, "items[1].location"),
        ]:
            with pytest.raises(domain.InvalidInput) as refused:
                validate_allocation_request(request, SHOP, policy, split, pinned)
            assert refused.value.field == field
