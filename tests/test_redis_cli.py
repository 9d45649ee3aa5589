"""``stockguard reconcile`` as an operator runs it: a real process, its output, its exit code."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import cast

import pytest

from redis_support import redis_engine
from stockguard.strategies.redis import RedisStrategy

pytestmark = pytest.mark.asyncio


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def stockguard(*args: str) -> tuple[int, str]:
    """Runs the command; (exit code, stderr where it reports)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stockguard.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode is not None
    return child.returncode, (stdout + stderr).decode()


async def test_reconcile_loads_an_empty_keyspace_reports_drift_and_repairs_it(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await engine.set_on_hand("A", 7)
        await engine.reserve("o-1", [("A", 2)])
        await engine.strategy.settle()
        strategy = cast(RedisStrategy, engine.strategy)
        prefix = strategy.keys.prefix
        common = ("--db", db_url, "--redis", redis_url, "--prefix", prefix)

        code, out = await stockguard("reconcile", *common)
        assert code == 0 and "consistent" in out, out

        await strategy.clients.commands.hincrby(strategy.keys.stock("A"), "reserved", 5)
        code, out = await stockguard("reconcile", *common)
        assert code == 1, out
        assert "sku A: Redis on_hand 7, reserved 7, SQL + tail on_hand 7, reserved 2" in out

        code, out = await stockguard("reconcile", *common, "--repair")
        assert code == 0 and "1 repair(s)" in out and "consistent" in out, out
        assert (await engine.stock_of("A")).reserved == 2

        await strategy.clients.commands.delete(strategy.keys.loaded)
        code, out = await stockguard("reconcile", *common)
        assert code == 0, out
        assert "loaded Redis from SQL: 1 SKU(s), 1 held reservation(s), 1 order id(s)" in out
        assert (await engine.stock_of("A")).reserved == 2
