"""Faults against a real ``stockguard serve`` (issue 18 item 4), checked by the history
checker and the service's audit: short forms in CI, the matrix behind ``-m faults``.

Injections are scheduled by operation count in the short forms (``interval_ops``), so the
number of faults a run sees depends on its plan, not on the machine's speed.
"""

from __future__ import annotations

import pytest

from stockguard.verify.faults import AOF_SETTINGS, FaultRun
from stockguard.verify.load import LoadPlan

from .conftest import RunFault, assert_sound, assert_within_loss_bound

SHORT = LoadPlan(clients=4, ops_per_client=20)
"""80 operations: about a second of load on a quiet machine; each form below costs mostly
serve's start-ups (about 4 s each: imports and a granian worker)."""
ONCE = {"interval_ops": 40, "injections_max": 1, "pool_size": 4}
"""Inject once, after 40 of the load's 80 operations; serve with 4 database connections a
process (the suite shares one PostgreSQL server: FaultRun.pool_size)."""


# The longest first: pytest-xdist hands tests out in file order, and short ones left for
# the end even out the two workers.


async def test_two_workers_killed_inside_an_expiry_sweep(fault_run: RunFault) -> None:
    """``serve --workers 2`` on PostgreSQL killed (the load paused) while a sweep's
    transaction has marked due holds expired and waits on a stock row the harness locks.
    The database rolls the sweep back; the restarted serve's sweep ends those holds. (A
    kill mid-load: test_serve_killed_and_restarted_…; the matrix kills two workers
    mid-load too.)"""
    result = await fault_run(
        FaultRun("serve-kill", "postgres", "coalescing", workers=2, plan=SHORT,
                 **ONCE, sweep_kills=True)
    )  # fmt: skip
    assert result.injections == 1
    assert any("inside an expiry sweep" in note for note in result.notes), result.notes
    assert_sound(result)
    swept = [r for r in result.final.reservations.values() if r["order_id"].startswith("sweep-")]
    assert swept, "the harness's due holds"
    assert {r["status"] for r in swept} == {"expired"}, swept


async def test_standalone_persister_killed_loses_nothing(fault_run: RunFault) -> None:
    """``stockguard persist`` holding the lease, SIGKILLed mid-load and restarted: the
    lease lapses (10 s), a persister takes over from SQL's position, nothing answered is
    lost. (The events relay's crash test is tests/events/test_relay_crash.py.)"""
    result = await fault_run(FaultRun("persister-kill", "postgres", "redis", plan=SHORT, **ONCE))
    assert result.injections == 1
    assert_sound(result)


async def test_connections_cut_mid_transaction_lose_no_acknowledged_write(
    fault_run: RunFault,
) -> None:
    """A proxy between serve and PostgreSQL resets every connection every 20 operations:
    some commits lose their answer (indeterminate), none acknowledged is lost."""
    result = await fault_run(
        FaultRun("db-reset", "postgres", "coalescing", plan=SHORT, interval_ops=20, pool_size=4)
    )
    assert result.injections >= 3
    assert_sound(result)


async def test_serve_killed_and_restarted_loses_no_acknowledged_write(
    fault_run: RunFault,
) -> None:
    """SIGKILL to serve (its whole process group) mid-load, then a restart."""
    result = await fault_run(FaultRun("serve-kill", "sqlite", "conditional", plan=SHORT, **ONCE))
    assert result.injections == 1
    assert_sound(result)


async def test_postgres_stopped_immediately_and_restarted(fault_run: RunFault) -> None:
    """A PostgreSQL of the test's own, ``pg_ctl stop -m immediate`` (crash recovery at the
    next start) mid-load; serve reconnects by itself."""
    result = await fault_run(FaultRun("pg-restart", "postgres", "coalescing", plan=SHORT, **ONCE))
    assert result.injections == 1
    assert_sound(result)


@pytest.mark.parametrize("aof", AOF_SETTINGS)
async def test_redis_killed_loses_at_most_what_its_aof_setting_allows(
    fault_run: RunFault, aof: str
) -> None:
    """A redis-server of the test's own SIGKILLed mid-load under the redis strategy.
    docs/durability.md#what-a-crash-loses: ``always`` and ``everysec`` lose nothing on a
    process kill; without AOF Redis restarts empty (reloaded from SQL as ``stockguard
    reconcile`` does) and may lose what the persister had not yet copied, never more."""
    result = await fault_run(
        FaultRun("redis-restart", "postgres", "redis", plan=SHORT, **ONCE, aof=aof)
    )
    assert result.injections == 1
    if aof == "no":
        assert_within_loss_bound(result)
    else:
        assert result.loss_bound == 0
        assert_sound(result)


async def test_database_latency(fault_run: RunFault) -> None:
    """1-10 ms per chunk each way on the database link for the whole load. The matrix and
    the CLI use 50-500 ms, which takes minutes: the proxy delays each chunk in turn, a hold
    is dozens of them (2-20 ms made a hold take about 1 s), and the coalescing writer runs
    one batch at a time."""
    result = await fault_run(
        FaultRun("db-latency", "postgres", "coalescing",
                 plan=LoadPlan(clients=4, ops_per_client=5), latency_s=(0.001, 0.01),
                 pool_size=4)
    )  # fmt: skip
    assert_sound(result)


async def test_disk_full_under_sqlite(fault_run: RunFault) -> None:
    """SQLite on a 24 MB tmpfs (root), filled for 0.5 s mid-load: writes answer 503, never
    500, and nothing acknowledged is lost once the space is back."""
    result = await fault_run(
        FaultRun("disk-full", "sqlite", "coalescing", plan=SHORT, interval_s=0.5,
                 **ONCE)
    )  # fmt: skip
    assert result.injections == 1
    assert_sound(result)


async def test_one_of_two_serves_partitioned_from_the_database(fault_run: RunFault) -> None:
    """Two serves on one PostgreSQL database; the second one's link blackholed for 0.5 s
    mid-load while the first keeps answering."""
    result = await fault_run(
        FaultRun("partition", "postgres", "coalescing", plan=SHORT, interval_s=0.5,
                 **ONCE)
    )  # fmt: skip
    assert result.injections == 1
    assert_sound(result)


MATRIX = [
    ("none", "postgres", "coalescing", 1, ""),
    ("db-reset", "postgres", "conditional", 1, ""),
    ("db-reset", "postgres", "coalescing", 1, ""),
    ("db-reset", "postgres", "sharded", 1, ""),
    ("db-reset", "mysql", "conditional", 1, ""),
    ("db-reset", "mysql", "coalescing", 1, ""),
    ("db-reset", "mysql", "optimistic", 1, ""),
    ("db-reset", "postgres", "queue", 1, ""),
    ("db-latency", "postgres", "coalescing", 1, ""),
    ("db-latency", "mysql", "pessimistic", 1, ""),
    ("serve-kill", "sqlite", "coalescing", 1, ""),
    ("serve-kill", "postgres", "coalescing", 2, ""),
    ("serve-kill", "postgres", "coalescing", 2, "sweep"),
    ("serve-kill", "mysql", "sharded", 2, ""),
    ("serve-kill", "postgres", "redis", 1, ""),
    ("pg-restart", "postgres", "coalescing", 1, ""),
    ("pg-restart", "postgres", "conditional", 1, ""),
    ("redis-restart", "postgres", "redis", 1, "aof-always"),
    ("redis-restart", "postgres", "redis", 1, "aof-everysec"),
    ("redis-restart", "postgres", "redis", 1, "aof-no"),
    ("persister-kill", "postgres", "redis", 1, ""),
    ("disk-full", "sqlite", "coalescing", 1, ""),
    ("disk-full", "sqlite", "pessimistic", 1, ""),
    ("partition", "postgres", "coalescing", 1, ""),
    ("partition", "mysql", "conditional", 1, ""),
]
"""fault, backend, strategy, serve --workers, variant (``sweep``: every second kill inside
an expiry sweep; ``aof-*``: the own redis-server's persistence)."""


@pytest.mark.faults
@pytest.mark.parametrize(("fault", "backend", "strategy", "workers", "variant"), MATRIX)
async def test_fault_matrix(
    fault_run: RunFault, fault: str, backend: str, strategy: str, workers: int, variant: str
) -> None:
    plan = LoadPlan(clients=8, ops_per_client=60)
    every = {"serve-kill": 120, "pg-restart": 120, "redis-restart": 120, "disk-full": 120,
             "persister-kill": 120}  # fmt: skip
    result = await fault_run(
        FaultRun(fault, backend, strategy, workers, plan, interval_s=1.0,
                 interval_ops=every.get(fault, 40), sweep_kills=variant == "sweep",
                 aof=variant.removeprefix("aof-") if variant.startswith("aof-") else "always")
    )  # fmt: skip
    assert fault == "none" or result.injections >= 1
    if variant == "aof-no":
        assert_within_loss_bound(result)
    else:
        assert_sound(result)
