"""Several OS processes, each with its own Engine, race for one SKU on one database.

Each strategy keeps its decisions per process (the coalescing writer's queue, the
sharded strategy's bucket choice), so correctness across processes rests on the
database alone: row locks (or SQLite's write lock) taken by every batch. Three
``python -c`` processes buy 300 units each of a SKU that has 200, starting at the same
moment; then three processes confirm or release those holds concurrently. The totals
must be exact, straight from the tables.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from conftest import NO_WAIT_BUDGET
from stockguard.engine import Engine
from stockguard.stores.sql.audit import audit, stock_totals

pytestmark = pytest.mark.slow

PROCESSES = 3
UNITS = 200
REQUESTS_PER_PROCESS = 300
RUN_S_MAX = 120

BUY = """
import asyncio, json, sys, time
from stockguard import domain
from stockguard.admission import AdmissionLimits
from stockguard.engine import Engine

async def main(url, strategy, name, count, start_at):
    no_budget = AdmissionLimits(queue_wait_s_max=0)  # exact outcomes: see conftest
    async with await Engine.open(
        url, strategy, migrate=False, pool_size=4, admission=no_budget
    ) as engine:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        async def buy(n):
            try:
                return (await engine.reserve(f"{name}-{n}", [("HOT", 1)])).reservation.id
            except domain.OutOfStock:
                return None
        ids = await asyncio.gather(*(buy(n) for n in range(count)))
    print(json.dumps([i for i in ids if i]))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
"""

SETTLE = """
import asyncio, json, sys, time
from stockguard.admission import AdmissionLimits
from stockguard.engine import Engine

async def main(url, strategy, ids, start_at):
    no_budget = AdmissionLimits(queue_wait_s_max=0)  # exact outcomes: see conftest
    async with await Engine.open(
        url, strategy, migrate=False, pool_size=4, admission=no_budget
    ) as engine:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        ended = await asyncio.gather(
            *(engine.confirm(i) if n % 2 == 0 else engine.release(i) for n, i in enumerate(ids))
        )
    print(json.dumps(sum(1 for r in ended if r.status == "confirmed")))

asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])))
"""


async def run_processes(script: str, argument_lists: list[list[str]]) -> list[object]:
    """Starts one process per argument list, all at once; returns each one's JSON answer."""
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            *arguments,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for arguments in argument_lists
    ]
    answers = []
    for process in processes:
        out, err = await asyncio.wait_for(process.communicate(), RUN_S_MAX)
        assert process.returncode == 0, err.decode()[-2000:]
        answers.append(json.loads(out))
    return answers


async def table_totals(engine: Engine) -> tuple[int, int]:
    async with engine.store.transaction(read_only=True) as tx:
        found = (await stock_totals(tx.connection, ["HOT"]))["HOT"]
    return found.on_hand, found.reserved


@pytest.mark.parametrize("strategy", ["coalescing", "sharded"])
async def test_processes_racing_for_one_sku_sell_exactly_the_stock(
    db_url: str, strategy: str
) -> None:
    async with await Engine.open(
        db_url, strategy, migrate=False, admission=NO_WAIT_BUDGET
    ) as engine:
        await engine.set_on_hand("HOT", UNITS)

        start_at = str(time.time() + 3)  # past every process's start-up: they race together
        bought = await run_processes(
            BUY,
            [
                [db_url, strategy, f"p{n}", str(REQUESTS_PER_PROCESS), start_at]
                for n in range(PROCESSES)
            ],
        )
        held = [ids for ids in bought if isinstance(ids, list)]
        assert sum(len(ids) for ids in held) == UNITS
        assert await table_totals(engine) == (UNITS, UNITS)

        start_at = str(time.time() + 3)
        confirmed = await run_processes(
            SETTLE, [[db_url, strategy, json.dumps(ids), start_at] for ids in held]
        )
        sold = sum(n for n in confirmed if isinstance(n, int))
        assert sold == sum((len(ids) + 1) // 2 for ids in held)
        assert await table_totals(engine) == (UNITS - sold, 0)
        report = await audit(engine.store)
        assert report.violations == []
        assert report.oversold_units == 0
