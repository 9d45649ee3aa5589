"""A background loop inside ``serve`` that runs one pass every interval until stopped.

The expiry sweeper and the live audit share it: wait first (a fresh process answers its
first requests without a pass competing for the pool), run a pass, repeat; on shutdown
let a pass in progress finish (bounded by ``STOP_WAIT_S_MAX``), then end. A pass that
raises is the subclass's to count and log; the loop itself never dies of it.
"""

from __future__ import annotations

import asyncio
import contextlib

STOP_WAIT_S_MAX = 15.0
"""How long shutdown waits for a pass in progress before cancelling it (which rolls its
transaction back: nothing is half-written either way)."""


class Periodic:
    name = "stockguard-periodic"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        assert self._task is None, "started twice"
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Lets a pass in progress finish (bounded), then ends the loop."""
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

    async def _run(self) -> None:
        while not await self._stopped_within(self.interval_s):
            await self.tick()

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()
