"""The NATS JetStream sink (docs/events.md#nats): every event on ``<prefix>.<type>.<key>``.

The key is the SKU of a ``stock.*`` event and the reservation id of a ``reservation.*``
one, so a consumer can subscribe to one SKU (``stockguard.stock.*.SKU-1``) or a family
(``stockguard.stock.>``). Each message carries ``Nats-Msg-Id: <event id>``: JetStream drops
a message whose id it saw within the stream's duplicate window, so the events a relay
re-publishes after a crash (at-least-once from the outbox) are stored once.

A page of events is published pipelined (``publish_async``) and the cursor moves only over
the acknowledged prefix; a failure is retried from there with a capped backoff, forever:
NATS is infrastructure, not a customer's endpoint, and nothing is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec

from stockguard import metrics
from stockguard.domain.events import StoredEvent
from stockguard.events import state
from stockguard.events.sink import Bell, SinkLoop
from stockguard.events.state import Fence
from stockguard.stores.sql import outbox
from stockguard.stores.sql.store import SqlStore

logger = logging.getLogger("stockguard.nats")

PAGE = 500
CHECKPOINT_S = 0.25
BACKOFF_S_MAX = 30.0
DUPLICATE_WINDOW_S = 600.0
"""The stream's de-duplication window when stockguard creates it: longer than any relay
failover plus a checkpoint interval, so every re-publish is caught."""
PUBLISH_TIMEOUT_S = 10.0
_ENCODE = msgspec.json.Encoder()
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def subject_token(key: str) -> str:
    """``key`` as one NATS subject token: letters, digits, ``-`` and ``_`` as they are,
    every other byte of its UTF-8 as ``%XX`` — NATS forbids ``.``, ``*``, ``>`` and
    whitespace in a token, and the escape keeps two different SKUs on two subjects."""
    if not key:
        return "_"
    return "".join(
        ch if ch in _PLAIN else "".join(f"%{byte:02X}" for byte in ch.encode()) for ch in key
    )


def subject_of(prefix: str, event: StoredEvent) -> str:
    return f"{prefix}.{event.event.type.value}.{subject_token(event.event.subject_key)}"


class NatsLoop(SinkLoop):
    """Publishes the outbox to JetStream until ``stop``; one per active relay."""

    name = "stockguard-nats"
    logger = logger

    def __init__(
        self,
        store: SqlStore,
        fence: Fence,
        bell: Bell,
        poll_s: float,
        url: str,
        stream: str,
        prefix: str,
    ) -> None:
        super().__init__()
        self.store = store
        self.fence = fence
        self.bell = bell
        self.poll_s = poll_s
        self.url = url
        self.stream = stream
        self.prefix = prefix

    def restart_delay_s(self, failures: int) -> float:
        """NATS is infrastructure: retried forever, the wait doubling up to a cap."""
        return min(BACKOFF_S_MAX, 0.5 * 2.0 ** min(failures, 10))

    async def _connect(self) -> tuple[Any, Any]:
        import nats
        from nats.js.errors import NotFoundError

        client = await nats.connect(
            self.url, connect_timeout=5, max_reconnect_attempts=-1, allow_reconnect=True
        )
        js = client.jetstream(timeout=PUBLISH_TIMEOUT_S)
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(
                name=self.stream,
                subjects=[f"{self.prefix}.>"],
                duplicate_window=DUPLICATE_WINDOW_S,
                description="stockguard stock events (docs/events.md#nats)",
            )
            logger.info("created JetStream stream %s for %s.>", self.stream, self.prefix)
        return client, js

    async def deliver(self) -> None:
        client, js = await self._connect()
        try:
            cursor = await state.cursor_or_start(self.store, state.NATS_SINK, self.fence)
            self.cursor = cursor.last_seq
            saved, last_checkpoint = self.cursor, time.monotonic()
            while not self.stopping:
                rung = self.bell.rung
                page = await outbox.events_after(self.store, self.cursor, PAGE)
                if not page:
                    self.head_at_ms = None
                    if saved != self.cursor:
                        await self._checkpoint()
                        saved, last_checkpoint = self.cursor, time.monotonic()
                    await self.bell.wait(self.poll_s, rung)
                    continue
                self.head_at_ms = page[0].event.at_ms
                futures = [
                    await js.publish_async(
                        subject_of(self.prefix, event),
                        _ENCODE.encode(event.envelope()),
                        headers={"Nats-Msg-Id": str(event.id)},
                    )
                    for event in page
                ]
                acked = 0
                try:
                    for future in futures:
                        await asyncio.wait_for(future, PUBLISH_TIMEOUT_S)
                        acked += 1
                finally:
                    if acked:
                        self.cursor = page[acked - 1].id
                        metrics.event_delivered("nats", "delivered", acked)
                    if acked < len(page):
                        metrics.event_delivered("nats", "failed", len(page) - acked)
                        for future in futures[acked:]:
                            future.cancel()
                if time.monotonic() - last_checkpoint >= CHECKPOINT_S:
                    await self._checkpoint()
                    saved, last_checkpoint = self.cursor, time.monotonic()
        finally:
            if self.cursor != 0:
                with contextlib.suppress(Exception):  # best effort on the way out
                    await self._checkpoint()
            await client.close()

    async def _checkpoint(self) -> None:
        await state.checkpoint(
            self.store,
            self.fence,
            state.NATS_SINK,
            last_seq=self.cursor,
            attempts=0,
            next_attempt_at_ms=None,
            last_error=None,
        )
