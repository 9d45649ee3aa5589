"""The expiry sweeper that runs inside every ``serve`` process.

Each tick ends every held reservation past its expiry (``Engine.expire_due``). Several
workers or servers sweeping one database never double-release: the store locks due rows
with ``SKIP LOCKED`` (PostgreSQL, MariaDB) or the whole database (SQLite), and moves a
reservation out of ``held`` only if it is still held. A sweep that fails (backend down)
is counted and logged, and the next tick tries again: the sweeper never dies of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stockguard import metrics
from stockguard.engine import Engine

STOP_WAIT_S_MAX = 15.0
"""How long shutdown waits for a sweep in progress before cancelling it (which rolls
its transaction back: nothing is half-written either way)."""

logger = logging.getLogger("stockguard.sweeper")


class Sweeper:
    def __init__(
        self,
        engine: Engine,
        interval_s: float,
        strategy_events: metrics.StrategyEventMirror | None = None,
    ) -> None:
        assert interval_s > 0
        self.engine = engine
        self.interval_s = interval_s
        self.strategy_events = strategy_events
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        assert self._task is None, "started twice"
        self._task = asyncio.create_task(self._run(), name="stockguard-expiry-sweeper")

    async def stop(self) -> None:
        """Lets a sweep in progress finish (bounded), then ends the loop."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT_S_MAX)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

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

    async def _run(self) -> None:
        # Wait first: a fresh process answers its first requests without a sweep
        # competing for the pool (expiry never depends on the sweep: confirm checks the
        # database clock itself).
        while not await self._stopped_within(self.interval_s):
            await self.sweep_once()
            if self.strategy_events is not None:
                self.strategy_events.sync()

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()
