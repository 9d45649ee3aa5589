"""The fault harness's fixtures: ``fault_run`` runs one fault against a real ``serve``.

The short forms run in every CI run; the matrix (``-m faults``, or the environment
variable ``STOCKGUARD_FAULTS=1``) runs every fault × backend × strategy at a longer load.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from stockguard.verify.faults import FaultResult, FaultRun, FaultUnsupported, run_fault

RunFault = Callable[[FaultRun], Awaitable[FaultResult]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: the long fault matrix (run with STOCKGUARD_FAULTS=1)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("STOCKGUARD_FAULTS") == "1":
        return
    skip = pytest.mark.skip(reason="the fault matrix: STOCKGUARD_FAULTS=1 runs it")
    for item in items:
        if item.get_closest_marker("faults") is not None:
            item.add_marker(skip)


@pytest.fixture
def fault_run(tmp_path: Path) -> RunFault:
    """``await fault_run(FaultRun(...))``: the run's result; a fault this machine cannot
    make (no root for a tmpfs, no redis-server, no initdb) skips the test with the reason,
    or fails it under ``STOCKGUARD_REQUIRE_SERVICES=1``: CI runs as root with every binary,
    and a skipped fault there would be a fault nobody runs (tests/conftest.py's rule)."""

    async def start(run: FaultRun) -> FaultResult:
        try:
            result = await run_fault(run, tmp_path)
        except FaultUnsupported as missing:
            if os.environ.get("STOCKGUARD_REQUIRE_SERVICES") == "1":
                pytest.fail(f"{missing} (STOCKGUARD_REQUIRE_SERVICES=1)")
            pytest.skip(str(missing))
        print(result.report.summary(), result.row(), result.notes)
        return result

    return start


def assert_sound(result: FaultResult) -> None:
    """What every fault run must show: a valid history, nothing acknowledged lost,
    nothing oversold."""
    report = result.report
    assert report.valid, (report.summary(), report.anomalies[:20])
    assert report.acknowledged_lost == 0
    assert report.oversold_units == 0


def assert_within_loss_bound(result: FaultResult) -> None:
    """A run allowed to lose acknowledged writes (Redis without AOF, docs/durability.md):
    ``FaultResult.within_loss_bound``."""
    assert result.within_loss_bound(), (
        result.report.summary(),
        result.loss_bound,
        result.report.anomalies[:20],
    )
