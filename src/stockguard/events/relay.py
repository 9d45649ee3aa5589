"""The relay (docs/events.md#the-relay): outbox -> ids -> webhooks and NATS, one per database.

Every ``serve`` process (each worker) and every ``stockguard relay`` runs one; a lease in
the database (``lease``) lets exactly one of them work at a time, the others standing by
to take over within ``lease_s`` of its death. The active one loops:

1. number the committed, unnumbered outbox rows (``outbox.sequence``, fenced by the
   lease, so ids are handed out in one place and never twice), after a read-only look
   for any: an idle relay polls without a write transaction (on SQLite a write locks the
   whole database, and on PostgreSQL each one is a WAL flush);
2. ring the endpoint loops and the NATS loop, which deliver in id order from their own
   cursors in the database (``webhooks``, ``nats_sink``);
3. every few seconds: pick up endpoint changes made through the admin API, set the lag
   gauges, and prune what every sink is past and the retention allows.

On a memory store (``memory://``, one process by nature) it only numbers events, so the
pull feed works; webhooks and NATS need the SQL tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx

from stockguard import metrics
from stockguard.config import EventsSettings
from stockguard.events import state
from stockguard.events.lease import Lease, LeaseLost
from stockguard.events.nats_sink import NatsLoop
from stockguard.events.sink import Bell
from stockguard.events.webhooks import EndpointLoop, Retry
from stockguard.stores.contract import Store
from stockguard.stores.sql import outbox
from stockguard.stores.sql.store import SqlStore

logger = logging.getLogger("stockguard.relay")

SEQUENCE_BATCH = 200
"""Rows one numbering transaction takes: small, so the sinks start sending the first of a
burst while the relay numbers the rest (a flash sale's 1,000 holds numbered at once took
~0.5 s on a loaded machine before the first was sent); a backlog is numbered in a row of
such transactions, without the poll wait between them."""
REFRESH_S = 2.0
"""How often the active relay re-reads the endpoint list (admin changes take effect)."""
METRICS_S = 1.0
PRUNE_S = 30.0


class Relay:
    def __init__(self, store: Store, settings: EventsSettings) -> None:
        self.any_store = store
        self.settings = settings
        self.store = store if isinstance(store, SqlStore) else None
        self.lease = Lease(self.store, settings.lease_s) if self.store is not None else None
        self.retry = Retry(
            settings.webhook_attempts_max,
            settings.webhook_backoff_s,
            settings.webhook_backoff_max_s,
            settings.webhook_timeout_s,
        )
        self.bell = Bell()
        self.endpoints: dict[str, EndpointLoop] = {}
        self.nats: NatsLoop | None = None
        self.client: httpx.AsyncClient | None = None
        self.active = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._due = {"lease": 0.0, "refresh": 0.0, "metrics": 0.0, "prune": 0.0}
        self._numbered_last = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        assert self._task is None, "started twice"
        self._task = asyncio.create_task(self.run(), name="stockguard-relay")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Until ``stop``: stand by, or work while holding the lease."""
        try:
            while not self._stopping.is_set():
                try:
                    numbered = await self._tick()
                except LeaseLost:
                    logger.warning("relay lease lost: standing by")
                    await self._deactivate()
                    numbered = 0
                except Exception as error:  # the database is down: keep trying
                    logger.warning("relay tick failed: %s: %s", type(error).__name__, error)
                    numbered = 0
                    await self._wait(1.0)
                if numbered < SEQUENCE_BATCH:
                    await self._wait(self.settings.poll_interval_s)
        finally:
            await self._deactivate()
            if self.lease is not None:
                with contextlib.suppress(Exception):
                    await self.lease.release()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _due_now(self, what: str, every_s: float) -> bool:
        now = time.monotonic()
        if now >= self._due[what]:
            self._due[what] = now + every_s
            return True
        return False

    # ------------------------------------------------------------------ one turn

    async def _tick(self) -> int:
        if self.store is None or self.lease is None:
            numbered = await self.any_store.sequence_events(SEQUENCE_BATCH)
            return numbered
        lease_every = self.settings.lease_s / (4 if self.active else 2)
        if self._due_now("lease", lease_every):
            if await self.lease.acquire():
                if not self.active:
                    await self._activate()
            elif self.active:
                await self._deactivate()
        if not self.active:
            return 0
        await self._sink_failures()
        numbered = 0
        # A read first, so an idle relay polls without a write transaction; straight to
        # the write while events keep coming (the read would only add a round trip).
        if self._numbered_last or await state.any_unsequenced(self.store):
            numbered = await outbox.sequence(self.store, SEQUENCE_BATCH, fence=self.lease.fence)
        self._numbered_last = numbered
        if numbered:
            self.bell.ring()
        if self._due_now("refresh", REFRESH_S):
            await self._refresh_endpoints()
        if self._due_now("metrics", METRICS_S):
            await self._measure()
        if self._due_now("prune", PRUNE_S):
            await self._prune()
        return numbered

    async def _activate(self) -> None:
        assert self.lease is not None
        logger.info("relay active (lease token %s, holder %s)", self.lease.token, self.lease.holder)
        self.active = True
        self.client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._due["refresh"] = self._due["metrics"] = 0.0
        await self._refresh_endpoints()
        if self.settings.nats_url:
            assert self.store is not None
            self.nats = NatsLoop(
                self.store,
                self.lease.fence,
                self.bell,
                self.settings.poll_interval_s,
                self.settings.nats_url,
                self.settings.nats_stream,
                self.settings.nats_subject_prefix,
            )
            self.nats.start()

    async def _deactivate(self) -> None:
        if not self.active:
            return
        self.active = False
        for loop in list(self.endpoints.values()):
            await loop.stop()
        self.endpoints.clear()
        if self.nats is not None:
            await self.nats.stop()
            self.nats = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        metrics.OUTBOX_LAG_EVENTS.set(0)
        metrics.OUTBOX_LAG_SECONDS.set(0)

    async def _sink_failures(self) -> None:
        """A sink loop that ended on ``LeaseLost`` ends this relay's turn."""
        loops: list[EndpointLoop | NatsLoop] = [*self.endpoints.values()]
        if self.nats is not None:
            loops.append(self.nats)
        for loop in loops:
            task = loop.task
            if task is not None and task.done() and not task.cancelled():
                error = task.exception()
                if isinstance(error, LeaseLost):
                    raise error
                loop.start()  # it should not end otherwise: start it again

    async def _refresh_endpoints(self) -> None:
        assert self.store is not None
        assert self.lease is not None
        assert self.client is not None
        wanted = {e.id: e for e in await state.list_endpoints(self.store) if e.active}
        for endpoint_id, loop in list(self.endpoints.items()):
            if wanted.get(endpoint_id) != loop.endpoint:  # gone, inactive, or edited
                await loop.stop()
                del self.endpoints[endpoint_id]
        for endpoint_id, endpoint in wanted.items():
            if endpoint_id not in self.endpoints:
                loop = EndpointLoop(
                    self.store,
                    endpoint,
                    self.lease.fence,
                    self.client,
                    self.retry,
                    self.bell,
                    self.settings.poll_interval_s,
                )
                loop.start()
                self.endpoints[endpoint_id] = loop

    def _sinks(self) -> list[EndpointLoop | NatsLoop]:
        found: list[EndpointLoop | NatsLoop] = list(self.endpoints.values())
        if self.nats is not None:
            found.append(self.nats)
        return found

    async def _measure(self) -> None:
        assert self.store is not None
        count, oldest = await outbox.unsequenced(self.store)
        top = await outbox.last_seq(self.store)
        now_ms = int(time.time() * 1000)
        behind = max((top - sink.cursor for sink in self._sinks()), default=0)
        heads = [sink.head_at_ms for sink in self._sinks() if sink.head_at_ms is not None]
        if oldest is not None:
            heads.append(oldest)
        metrics.OUTBOX_LAG_EVENTS.set(count + max(behind, 0))
        metrics.OUTBOX_LAG_SECONDS.set(max(0.0, (now_ms - min(heads)) / 1000) if heads else 0.0)

    async def _prune(self) -> None:
        assert self.store is not None
        assert self.lease is not None
        cursors = await state.cursors(self.store)
        live = [state.webhook_sink(endpoint_id) for endpoint_id in self.endpoints]
        if self.nats is not None:
            live.append(state.NATS_SINK)
        positions = [cursors[sink].last_seq for sink in live if sink in cursors]
        horizon = min(positions) if positions else await outbox.last_seq(self.store)
        gone = await state.prune(
            self.store,
            self.lease.fence,
            horizon_seq=horizon,
            retention_ms=int(self.settings.retention_s * 1000),
            retention_max_ms=int(self.settings.retention_max_s * 1000),
        )
        if gone:
            logger.info("pruned %d delivered event(s) from the outbox", gone)
