"""The library's public face: what ``import stockguard`` offers, and how ``Engine``
answers callers who pass it something out of range."""

from __future__ import annotations

import pytest

import stockguard
from stockguard import domain
from stockguard.engine import Engine


def test_every_error_a_caller_may_catch_is_exported_sorted() -> None:
    errors = {
        name
        for name, value in vars(domain).items()
        if isinstance(value, type) and issubclass(value, domain.StockguardError)
    }
    assert errors <= set(stockguard.__all__)
    assert stockguard.__all__ == sorted(stockguard.__all__)
    for name in stockguard.__all__:
        assert hasattr(stockguard, name), name


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("strategy", ["coalescing"])
async def test_ping_counters_and_audit_need_no_reach_into_the_engine(engine: Engine) -> None:
    await engine.ping()
    await engine.set_on_hand("A", 2)
    await engine.reserve("o-1", [("A", 1)])
    report = await engine.audit()
    assert report.ok, report.violations
    assert engine.strategy_name == "coalescing"
    assert engine.counters()["passed"] == 1


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("strategy", ["coalescing"])
@pytest.mark.parametrize("limit", [0, -1, 501, 10**6, True, "5"])
async def test_listing_limits_out_of_range_are_invalid_input_not_assertions(
    engine: Engine, limit: object
) -> None:
    """Library callers get the domain's typed error (an ``assert`` vanishes under -O)."""
    calls = [
        engine.list_reservations(limit=limit),  # type: ignore[arg-type]
        engine.movements("A", limit=limit),  # type: ignore[arg-type]
        engine.list_stock(limit=limit),  # type: ignore[arg-type]
        engine.list_products(limit=limit),  # type: ignore[arg-type]
        engine.list_standalone_stock(limit=limit),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(domain.InvalidInput):
            await call
