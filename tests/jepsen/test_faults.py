"""Faults against a real ``stockguard serve`` (issue 18 item 4), checked by the history
checker and the service's audit: short forms in CI, the matrix behind ``-m faults``.

Injections are scheduled by operation count in the short forms (``interval_ops``), so the
number of faults a run sees depends on its plan, not on the machine's speed.
"""

from __future__ import annotations

import pytest

from stockguard.verify.faults import FaultRun
from stockguard.verify.load import LoadPlan

from .conftest import RunFault, assert_sound

SHORT = LoadPlan(clients=4, ops_per_client=20)


async def test_connections_cut_mid_transaction_lose_no_acknowledged_write(
    fault_run: RunFault,
) -> None:
    """A proxy between serve and PostgreSQL resets every connection every 10 operations:
    some commits lose their answer (indeterminate), none acknowledged is lost."""
    result = await fault_run(
        FaultRun("db-reset", "postgres", "coalescing", plan=SHORT, interval_ops=10)
    )
    assert result.injections >= 5
    assert_sound(result)


async def test_serve_killed_and_restarted_loses_no_acknowledged_write(
    fault_run: RunFault,
) -> None:
    """SIGKILL to serve (its whole process group) after 30 operations, then a restart (the
    matrix kills more often and with --workers 2)."""
    result = await fault_run(
        FaultRun("serve-kill", "sqlite", "conditional", plan=SHORT, interval_ops=30)
    )
    assert result.injections >= 1
    assert_sound(result)


MATRIX = [
    ("none", "postgres", "coalescing", 1),
    ("db-reset", "postgres", "conditional", 1),
    ("db-reset", "postgres", "coalescing", 1),
    ("db-reset", "postgres", "sharded", 1),
    ("db-reset", "mysql", "conditional", 1),
    ("db-reset", "mysql", "coalescing", 1),
    ("db-reset", "mysql", "optimistic", 1),
    ("db-reset", "postgres", "queue", 1),
    ("db-latency", "postgres", "coalescing", 1),
    ("db-latency", "mysql", "pessimistic", 1),
    ("serve-kill", "sqlite", "coalescing", 1),
    ("serve-kill", "postgres", "coalescing", 2),
    ("serve-kill", "mysql", "sharded", 2),
    ("serve-kill", "postgres", "redis", 1),
    ("pg-restart", "postgres", "coalescing", 1),
    ("pg-restart", "postgres", "conditional", 1),
    ("redis-restart", "postgres", "redis", 1),
    ("disk-full", "sqlite", "coalescing", 1),
    ("disk-full", "sqlite", "pessimistic", 1),
    ("partition", "postgres", "coalescing", 1),
    ("partition", "mysql", "conditional", 1),
]


@pytest.mark.faults
@pytest.mark.parametrize(("fault", "backend", "strategy", "workers"), MATRIX)
async def test_fault_matrix(
    fault_run: RunFault, fault: str, backend: str, strategy: str, workers: int
) -> None:
    plan = LoadPlan(clients=8, ops_per_client=60)
    every = {"serve-kill": 120, "pg-restart": 120, "redis-restart": 120, "disk-full": 120}
    result = await fault_run(
        FaultRun(fault, backend, strategy, workers, plan, interval_s=1.0,
                 interval_ops=every.get(fault, 40))
    )  # fmt: skip
    assert fault == "none" or result.injections >= 1
    assert_sound(result)
