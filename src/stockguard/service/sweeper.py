"""The expiry sweeper that runs inside every ``serve`` process.

Each tick ends every held reservation past its expiry (``Engine.expire_due``). Several
workers or servers sweeping one database never double-release: the store locks due rows
with ``SKIP LOCKED`` (PostgreSQL, MariaDB) or the whole database (SQLite), and moves a
reservation out of ``held`` only if it is still held. A sweep that fails (backend down)
is counted and logged, and the next tick tries again: the sweeper never dies of it.
"""

from __future__ import annotations

import logging

from stockguard import metrics
from stockguard.engine import Engine
from stockguard.service.periodic import Periodic

logger = logging.getLogger("stockguard.sweeper")


class Sweeper(Periodic):
    name = "stockguard-expiry-sweeper"

    def __init__(
        self,
        engine: Engine,
        interval_s: float,
        strategy_events: metrics.StrategyEventMirror | None = None,
    ) -> None:
        assert interval_s > 0
        super().__init__(interval_s)
        self.engine = engine
        self.strategy_events = strategy_events

    async def sweep_once(self) -> int:
        try:
            ended = await self.engine.expire_due()
        except Exception as error:
            metrics.SWEEPS.labels(outcome="failed").inc()
            logger.warning("expiry sweep failed: %s: %s", type(error).__name__, error)
            return 0
        metrics.SWEEPS.labels(outcome="ok").inc()
        if ended:
            logger.info("expiry sweep ended %d reservation(s)", ended)
        return ended

    async def tick(self) -> None:
        # Expiry never depends on the sweep: confirm checks the database clock itself.
        await self.sweep_once()
        if self.strategy_events is not None:
            self.strategy_events.sync()
