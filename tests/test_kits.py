"""Kits on every backend × strategy (docs/design.md#kits), and the pure expansion.

The classic bundle oversell (two cart lines sharing a component, each checked alone) must
be impossible: demand is summed across every line before any strategy sees the request.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockguard import domain
from stockguard.domain import Line, ReserveRequest, Status, StockLevel
from stockguard.domain.kits import KIT_COMPONENTS_MAX, Kit, expand, kit_available, validate_kit
from stockguard.engine import Engine

memory = pytest.mark.memory


@memory
@pytest.mark.asyncio
async def test_kit_lines_sharing_a_component_never_oversell_it(engine: Engine) -> None:
    """40 buyers each want a kit (2 A + 1 B) and a loose A: 3 A per order against 30."""
    await engine.set_on_hand("A", 30)
    await engine.set_on_hand("B", 100)
    _, created = await engine.define_kit("K", [("A", 2), ("B", 1)])
    assert created
    results = await asyncio.gather(
        *(engine.reserve(f"k-{n}", [("K", 1), ("A", 1)]) for n in range(40)),
        return_exceptions=True,
    )
    held = [r.reservation for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(held) == 10
    assert all(isinstance(r, domain.OutOfStock) for r in refused), refused[:3]
    assert all(r.lines == (Line("A", 3), Line("B", 1)) for r in held)
    assert (await engine.stock_of("A")).reserved == 30
    assert (await engine.stock_of("B")).reserved == 10
    kit, available = await engine.kit("K")
    assert kit.components == (Line("A", 2), Line("B", 1))
    assert available == 0

    await engine.confirm(held[0].id)  # settles the components
    await engine.release(held[1].id)
    assert await engine.stock("A") == [
        StockLevel("A", 27, 24, (await engine.stock_of("A")).version)
    ]
    assert (await engine.stock_of("B")).on_hand == 99
    assert (await engine.kit("K"))[1] == 1  # 3 A available: one kit of 2
    report = await engine.audit()
    assert report.violations == []


@memory
@pytest.mark.asyncio
async def test_a_kit_order_replays_even_in_a_process_that_never_saw_the_kit(
    engine: Engine,
) -> None:
    await engine.set_on_hand("C", 5)
    await engine.define_kit("PAIR", [("C", 2)])
    first = (await engine.reserve("pair-1", [("PAIR", 2)])).reservation
    engine.kits_seen.clear()  # as another worker would be: it has not met the kit
    again = await engine.reserve("pair-1", [("PAIR", 2)])
    assert not again.created
    assert again.reservation.id == first.id
    engine.kits_seen.clear()
    with pytest.raises(domain.OutOfStock):
        await engine.reserve("pair-2", [("PAIR", 1)])  # 1 C left, a pair takes 2
    assert (await engine.get_reservation(first.id)).status is Status.HELD


@memory
@pytest.mark.asyncio
async def test_kit_definitions_are_checked_and_never_change(engine: Engine) -> None:
    await engine.set_on_hand("D", 3)
    await engine.set_on_hand("E", 3)
    await engine.define_kit("DE", [("D", 1), ("E", 1)])
    assert (await engine.define_kit("DE", [("E", 1), ("D", 1)]))[1] is False  # a replay
    with pytest.raises(domain.DuplicateSku):
        await engine.define_kit("DE", [("D", 2)])  # another definition
    with pytest.raises(domain.DuplicateSku):
        await engine.define_kit("D", [("E", 1)])  # D has stock of its own
    with pytest.raises(domain.UnknownSku):
        await engine.define_kit("DX", [("D", 1), ("nope", 1)])
    with pytest.raises(domain.UnknownSku):
        await engine.define_kit("NEST", [("DE", 1)])  # a kit has no stock: no nesting
    engine.kits_seen.clear()
    with pytest.raises(domain.DuplicateSku):
        await engine.set_on_hand("DE", 5)  # a kit has no stock of its own
    with pytest.raises(domain.InvalidInput):
        await engine.define_kit("SELF", [("SELF", 1)])
    assert [k.sku for k in await engine.list_kits()] == ["DE"]
    assert await engine.list_kits(after="DE") == []


# ---------------------------------------------------------------------------- pure


def request(*lines: tuple[str, int]) -> ReserveRequest:
    return domain.validate_reserve("o", list(lines))


def test_expand_sums_demand_across_kit_and_loose_lines() -> None:
    kits = {"K": Kit("K", (Line("A", 2), Line("B", 1))), "J": Kit("J", (Line("A", 1),))}
    expanded = expand(request(("A", 1), ("J", 3), ("K", 2), ("Z", 1)), kits)
    assert expanded.lines == (Line("A", 8), Line("B", 2), Line("Z", 1))
    assert expanded.skus == ("A", "B", "Z")
    assert expanded.order_id == "o"


def test_a_pinned_kit_pins_its_components_and_keeps_the_request_options() -> None:
    """Click-and-collect of a kit: its components are asked for at the kit's location,
    and the request's allocation policy and split survive the expansion; one SKU asked
    for at two places is refused (docs/locations.md)."""
    kits = {"K": Kit("K", (Line("A", 2), Line("B", 1)))}
    pinned = domain.validate_reserve(
        "o", [Line("K", 1, location="store-1"), Line("Z", 1)], 900, None, "most_available", False
    )
    expanded = expand(pinned, kits)
    assert [(line.sku, line.location) for line in expanded.lines] == [
        ("A", "store-1"),
        ("B", "store-1"),
        ("Z", None),
    ]
    assert (expanded.allocation_policy, expanded.split) == ("most_available", False)
    clash = domain.validate_reserve("o", [Line("K", 1, location="store-1"), Line("A", 1)])
    with pytest.raises(domain.InvalidInput, match="more than one location"):
        expand(clash, kits)


def test_expand_refuses_what_would_break_a_limit() -> None:
    many = Kit("M", tuple(Line(f"c{n:03}", 1) for n in range(KIT_COMPONENTS_MAX)))
    kits = {f"M{n}": Kit(f"M{n}", tuple(Line(f"{n}-{c}", 1) for c in range(20))) for n in range(6)}
    with pytest.raises(domain.InvalidInput, match="more than"):
        expand(request(*((sku, 1) for sku in kits)), kits)
    with pytest.raises(domain.InvalidInput, match="exceed"):
        expand(request(("M", domain.QUANTITY_MAX)), {"M": Kit("M", (Line("c", 2),))})
    assert len(expand(request(("M", 1)), {"M": many}).lines) == KIT_COMPONENTS_MAX
    with pytest.raises(domain.InvalidInput):
        validate_kit("TOO", [(f"c{n}", 1) for n in range(KIT_COMPONENTS_MAX + 1)])
    with pytest.raises(domain.InvalidInput):
        validate_kit("DUP", [("a", 1), ("a", 2)])


@given(
    components=st.dictionaries(st.sampled_from("ABCDE"), st.integers(1, 5), min_size=1),
    available=st.dictionaries(st.sampled_from("ABCDE"), st.integers(0, 40)),
    loose=st.dictionaries(st.sampled_from("ABCDEF"), st.integers(1, 5)),
    kits_wanted=st.integers(1, 5),
)
def test_expansion_asks_for_exactly_the_units_and_kit_available_is_the_most_that_fit(
    components: dict[str, int],
    available: dict[str, int],
    loose: dict[str, int],
    kits_wanted: int,
) -> None:
    kit = validate_kit("KIT", list(components.items()))
    expanded = expand(request(("KIT", kits_wanted), *loose.items()), {"KIT": kit})
    demand = {line.sku: line.quantity for line in expanded.lines}
    for sku in set(components) | set(loose):
        assert demand[sku] == components.get(sku, 0) * kits_wanted + loose.get(sku, 0)
    levels = {sku: StockLevel(sku, n, 0, 0) for sku, n in available.items()}
    most = kit_available(kit, levels)

    def fits(n: int) -> bool:
        return all(available.get(sku, 0) >= q * n for sku, q in components.items())

    assert fits(most)
    assert not fits(most + 1)
