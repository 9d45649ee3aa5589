"""Each deliberately broken strategy (tests/canaries/registry.py) IS caught: by the
contract suite (the test named for it fails on it) and by the history checker (a short
mixed HTTP load on the service running it is found invalid by the check named for it).

The service runs in process (httpx's ASGI transport, its lifespan and sweeper running)
on the session's SQLite database: the canaries need the app to embed an engine of their
own, which ``serve`` cannot be told to build.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

import test_contract as contract
from conftest import NO_WAIT_BUDGET
from stockguard.config import Settings
from stockguard.engine import Engine
from stockguard.service import create_app
from stockguard.stores.memory import MemoryStore
from stockguard.stores.sql.store import SqlStore
from stockguard.verify.checker import check
from stockguard.verify.fetch import read_final
from stockguard.verify.load import Load, LoadPlan

from .registry import CANARIES

ADMIN = "canary-admin-token"

CAUGHT_BY_CONTRACT: dict[str, Callable[[Engine], Awaitable[None]]] = {
    "canary-check-then-act": (
        contract.test_500_concurrent_reservations_of_one_unit_sell_exactly_the_100_in_stock
    ),
    "canary-non-atomic": contract.test_overlapping_multi_line_reservations_hold_all_lines_or_none,
    "canary-confirm-after-expiry": contract.test_confirm_after_expiry_is_refused_before_any_sweep,
    "canary-release-forgets-line": contract.test_release_returns_the_units_and_is_replay_safe,
    "canary-replay-second-hold": contract.test_identical_replay_returns_the_same_reservation,
}
CAUGHT_BY_CHECKER: dict[str, tuple[set[str], LoadPlan]] = {
    # The storage's CHECK (I1) refuses the oversell the canary attempts: a 500.
    "canary-check-then-act": ({"internal"}, LoadPlan(clients=8, ops_per_client=15, on_hand=4)),
    # Two SKUs and little stock: two-line holds that fit their first line but not the second.
    "canary-non-atomic": (
        {"bank", "audit"},
        LoadPlan(clients=6, ops_per_client=20, skus=2, on_hand=3),
    ),
    "canary-confirm-after-expiry": (
        {"late-confirm"},
        LoadPlan(clients=4, ops_per_client=30, short_ttl_share=0.6, pause_s=0.04),
    ),
    "canary-release-forgets-line": ({"bank", "audit"}, LoadPlan(clients=4, ops_per_client=25)),
    "canary-replay-second-hold": ({"replay"}, LoadPlan(clients=4, ops_per_client=25)),
}


def test_every_canary_has_both_catches() -> None:
    assert set(CANARIES) == set(CAUGHT_BY_CONTRACT) == set(CAUGHT_BY_CHECKER)


async def open_canary(name: str, url: str) -> Engine:
    store = MemoryStore.open() if url.startswith("memory") else SqlStore.open(url, pool_size=4)
    return Engine(store, CANARIES[name](store), NO_WAIT_BUDGET)


@pytest.mark.memory
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize("name", sorted(CAUGHT_BY_CONTRACT))
async def test_the_contract_suite_catches_the_canary(name: str, db_url: str) -> None:
    engine = await open_canary(name, db_url)
    try:
        with pytest.raises((AssertionError, pytest.fail.Exception, Exception)):
            await CAUGHT_BY_CONTRACT[name](engine)
    finally:
        await engine.close()


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("name", sorted(CAUGHT_BY_CHECKER))
async def test_the_checker_catches_the_canary(name: str, db_url: str) -> None:
    expected, plan = CAUGHT_BY_CHECKER[name]
    engine = await open_canary(name, db_url)
    settings = Settings(
        database_url=db_url,
        admin_token=ADMIN,
        api_token=None,
        migrate=False,
        # No sweep during the load: an expired hold stays held until a confirm or
        # release meets it, which is where the expiry canary bites.
        sweep_interval_s=3_600,
        audit_interval_s=0,
    )
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app)
    base = "http://stockguard.test"
    try:
        async with app.router.lifespan_context(app):
            load = Load([base], ADMIN, plan, transport=transport)
            await load.setup()
            history = await load.run()
            final = await read_final(base, ADMIN, plan.sku_names(), transport=transport)
    finally:
        await engine.close()
    report = check(history, final)
    print(name, report.summary(), report.by_check())
    assert not report.valid, report.summary()
    assert expected <= set(report.by_check()), (report.by_check(), report.anomalies[:5])
