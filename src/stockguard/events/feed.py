"""The pull feed's long poll (docs/events.md#the-pull-feed): ``GET /v1/events?wait_s=``.

A request with nothing to read waits until an event past its ``after`` is numbered, or
``wait_s`` passes. However many requests wait in one process, one task polls the last
event id (one indexed ``max`` per ``POLL_S``) and wakes them: waiting costs the database
nothing per waiter. Waiters per process are capped; past the cap a request is answered at
once (empty), so a crowd of idle consumers cannot hold unbounded tasks.
"""

from __future__ import annotations

import asyncio
import contextlib

from stockguard.engine import Engine
from stockguard.stores.memory import MemoryStore
from stockguard.stores.sql import outbox
from stockguard.stores.sql.store import SqlStore

WAIT_S_MAX = 30.0
"""The longest a feed request waits (below common proxy read timeouts of 60 s)."""
POLL_S = 0.1
WAITERS_MAX = 256


async def last_id(engine: Engine) -> int:
    store = engine.store
    if isinstance(store, SqlStore):
        return await outbox.last_seq(store)
    assert isinstance(store, MemoryStore)
    return store.state.events_seq


class FeedWatch:
    """One per process: wakes long-poll requests when the last event id moves."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.top = 0
        self.waiters = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def wait_past(self, after: int, wait_s: float) -> None:
        """Returns once an event id above ``after`` exists, or after ``wait_s``."""
        if wait_s <= 0 or self.waiters >= WAITERS_MAX:
            return
        self.waiters += 1
        try:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._poll(), name="stockguard-feed-watch")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s), self._changed:
                    await self._changed.wait_for(lambda: self.top > after)
        finally:
            self.waiters -= 1

    async def _poll(self) -> None:
        while self.waiters > 0:
            try:
                top = await last_id(self.engine)
            except Exception:  # the database is down: the waiters time out as usual
                top = self.top
            if top != self.top:
                self.top = top
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(POLL_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
