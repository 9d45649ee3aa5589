"""What the relay's sink loops (``webhooks.EndpointLoop``, ``nats_sink.NatsLoop``) share:
the bell that wakes them and their task's life (docs/events.md#the-relay).

A sink loop delivers from its stored cursor until stopped; a failure (the database or the
sink is down) is logged and the loop starts again from the stored cursor after a delay; a
lost lease ends it, and the relay's watcher sees ``LeaseLost`` on its task.
``service/periodic.py`` does not fit here: its pass is short and shutdown waits for it,
while a sink's pass runs until it is stopped, and stopping cancels it (a POST in flight
is simply sent again by the next relay: at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stockguard.events.lease import LeaseLost


class Bell:
    """Rung by the relay when it has numbered new events; sink loops wait on it (or on
    their poll interval, whichever comes first).

    ``rung`` counts the rings: a loop notes it before reading the outbox and passes it
    to ``wait``, which returns at once if a ring came in between (else that ring would
    be lost and the events would wait a whole poll interval)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.rung = 0

    def ring(self) -> None:
        self.rung += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float, seen: int) -> None:
        if self.rung != seen:
            return
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)


class SinkLoop:
    """One sink's delivery task: ``start``, ``stop``, restarted after a failure."""

    name = "stockguard-sink"
    logger = logging.getLogger("stockguard.relay")

    def __init__(self) -> None:
        self.cursor = 0
        """The last event id delivered (or dead-lettered) here: the lag gauge."""
        self.head_at_ms: int | None = None
        """``at_ms`` of the event being delivered now (None: caught up): the lag gauge."""
        self._stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def deliver(self) -> None:
        """Delivers from the stored cursor until ``stop`` (returns) or a failure (raises)."""
        raise NotImplementedError

    def restart_delay_s(self, failures: int) -> float:
        """How long to wait after the ``failures``-th failure in a row."""
        return 1.0

    def start(self) -> None:
        self._stopping.clear()
        self.task = asyncio.create_task(self.run(), name=self.name)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def stop(self) -> None:
        self._stopping.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # it logged its own
                await self.task
            self.task = None

    async def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.deliver()
            except LeaseLost:
                raise
            except Exception as error:  # database or sink down: from the stored cursor
                failures += 1
                delay_s = self.restart_delay_s(failures)
                self.logger.warning(
                    "%s failed (%s: %s); again in %.1f s",
                    self.name,
                    type(error).__name__,
                    error,
                    delay_s,
                )
                await self.sleep(delay_s)
            else:
                failures = 0

    async def sleep(self, seconds: float) -> None:
        """Waits ``seconds`` or until ``stop``, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
