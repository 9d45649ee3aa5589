"""I5: an answered reservation survives the process being killed mid-load.

A child process reserves in a loop and prints each reservation id only after the engine
answered. The parent reads a number of those lines, kills the child with SIGKILL while
it still has requests in flight, then reopens the database: every printed id must be
there as a held reservation, and the tables must still pass the audit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap

import pytest

from stockguard import strategies
from stockguard.domain import Status
from stockguard.engine import Engine
from stockguard.stores.sql.audit import audit

pytestmark = pytest.mark.asyncio

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from stockguard.admission import AdmissionLimits
    from stockguard.engine import Engine

    async def main(url: str, strategy: str) -> None:
        no_budget = AdmissionLimits(queue_wait_s_max=0)  # every answer counted: see conftest
        engine = await Engine.open(url, strategy, migrate=False, admission=no_budget)
        async def buyer(worker: int) -> None:
            for n in range(100_000):
                outcome = await engine.reserve(f"crash-{worker}-{n}", [("DURABLE", 1)])
                print(outcome.reservation.id, flush=True)
        await asyncio.gather(*(buyer(w) for w in range(8)))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)

ANSWERS_BEFORE_KILL = 150


SQL_ONLY = [n for n in strategies.names() if not strategies.strategy_class(n).requires]


@pytest.mark.parametrize("strategy", SQL_ONLY)
async def test_answered_reservations_survive_sigkill(db_url: str, strategy: str) -> None:
    async with await Engine.open(db_url, strategy, migrate=False) as engine:
        await engine.set_on_hand("DURABLE", 1_000_000)

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        db_url,
        strategy,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    answered: list[str] = []
    try:
        assert child.stdout is not None
        while len(answered) < ANSWERS_BEFORE_KILL:
            line = await child.stdout.readline()
            if not line:
                break
            answered.append(line.decode().strip())
    finally:
        child.send_signal(signal.SIGKILL)
        _, stderr = await child.communicate()
    assert len(answered) == ANSWERS_BEFORE_KILL, stderr.decode()[-2000:]

    async with await Engine.open(db_url, strategy, migrate=False) as engine:
        for reservation_id in answered:
            assert (await engine.get_reservation(reservation_id)).status is Status.HELD
        level = await engine.stock_of("DURABLE")
        assert level.reserved >= ANSWERS_BEFORE_KILL
        report = await audit(engine.store)
        assert report.violations == []
