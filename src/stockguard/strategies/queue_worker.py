"""The consumer of one queue partition: FIFO batches through the coalescing batch path.

Every process runs one worker per partition, but only the holder of the partition's
lease reads it, so each partition has one consumer at a time across all processes and
its requests are decided in stream order. Reads go through the consumer group with one
consumer name: entries a crashed holder had read but not acknowledged are read again
(``XREADGROUP … 0``) by the next holder, and applying them again is harmless because a
reservation is idempotent by order_id (the replay answers the first hold).

A batch is decided and written by ``coalescing.apply_batch`` (ONE transaction, rows
locked once, requests granted in arrival order). Then every answer is pushed onto its
caller's inbox, and only then are the entries acknowledged and deleted. A request older
than the callers' wait is dropped unapplied: its caller has already been told 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors

from stockguard import domain, metrics
from stockguard.stores.redis.client import RedisClients, unavailable_on_error
from stockguard.stores.redis.codec import StreamId
from stockguard.stores.redis.keys import QUEUE_GROUP, KeyLayout
from stockguard.stores.redis.lease import Lease
from stockguard.stores.redis.replies import QueuedRequest, Result, encode_answer, parse_request
from stockguard.stores.sql.store import SqlStore
from stockguard.strategies.coalescing import apply_batch

log = logging.getLogger("stockguard.queue")

BLOCK_MS = 100
"""How long one read waits for requests (a new request wakes it at once)."""
LEASE_MS_DEFAULT = 5_000
INBOX_TTL_MS = 60_000
"""An inbox nobody drains (its process died) disappears this long after its last answer."""
BACKOFF_S_MIN = 0.05
BACKOFF_S_MAX = 2.0


class PartitionWorker:
    def __init__(
        self,
        clients: RedisClients,
        store: SqlStore,
        keys: KeyLayout,
        partition: int,
        *,
        batch_max: int,
        reply_wait_ms: int,
        counters: Counter[str],
        lease_ms: int = LEASE_MS_DEFAULT,
    ) -> None:
        self.clients = clients
        self.store = store
        self.stream = keys.queue(partition)
        self.partition = partition
        self.batch_max = batch_max
        self.reply_wait_ms = reply_wait_ms
        self.counters = counters
        self.lease = Lease(clients.commands, keys.queue_lease(partition), lease_ms)
        self.idle_s = lease_ms / 4000
        self._recovering = True
        self._group_ready = False
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        backoff_s = BACKOFF_S_MIN
        try:
            while not self._stopping:
                try:
                    handled = await self.step()
                except (domain.StoreUnavailable, redis_errors.ResponseError) as error:
                    _raise_if_cancelled(error)
                    self._recovering = True
                    log.warning("queue partition %d retries in %.2fs: %s", self.partition,
                                backoff_s, error)  # fmt: skip
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_S_MAX)
                    continue
                _raise_if_cancelled(None)
                backoff_s = BACKOFF_S_MIN
                if handled < 0:
                    await asyncio.sleep(self.idle_s)
        finally:
            with contextlib.suppress(Exception):
                await self.lease.release()

    async def step(self) -> int:
        """One read and one batch: requests handled, 0 when idle, -1 when not our turn."""
        async with unavailable_on_error("queue worker"):
            if not await self.lease.hold():
                self._recovering = True
                return -1
            if not self._group_ready:
                with contextlib.suppress(redis_errors.ResponseError):  # BUSYGROUP: it exists
                    await self.clients.commands.xgroup_create(
                        self.stream, QUEUE_GROUP, id="0", mkstream=True
                    )
                self._group_ready = True
            entries = await self._read()
        if not entries:
            self._recovering = False
            return 0
        await self._apply(entries)
        return len(entries)

    async def _read(self) -> list[tuple[str, dict[str, str] | None]]:
        start = "0" if self._recovering else ">"
        try:
            reply: Any = await self.clients.blocking.xreadgroup(
                QUEUE_GROUP,
                QUEUE_GROUP,
                {self.stream: start},
                count=self.batch_max,
                block=None if self._recovering else BLOCK_MS,
            )
        except redis_errors.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._group_ready = False
            return []
        entries: list[tuple[str, dict[str, str] | None]] = reply[0][1] if reply else []
        return entries

    async def _apply(self, entries: Sequence[tuple[str, dict[str, str] | None]]) -> None:
        async with unavailable_on_error("queue clock"):
            seconds, micros = await self.clients.commands.time()
        now_ms = seconds * 1000 + micros // 1000
        batch: list[tuple[str, QueuedRequest]] = []
        for entry_id, fields in entries:
            queued = _parse(fields)
            if queued is None:
                self.counters["queue_poison"] += 1
            elif now_ms - StreamId.parse(entry_id).ms > self.reply_wait_ms:
                self.counters["queue_stale"] += 1  # its caller was answered 503 already
            else:
                batch.append((entry_id, queued))
        results = await self._decide([queued.request for _, queued in batch])
        self.counters["queue_batches"] += 1
        self.counters["queue_requests"] += len(batch)
        ids = [entry_id for entry_id, _ in entries]
        async with unavailable_on_error("queue answers"):
            pipe = self.clients.commands.pipeline(transaction=False)
            for (entry_id, queued), result in zip(batch, results, strict=True):
                pipe.lpush(queued.inbox, encode_answer(queued.request_id, entry_id, result))
                pipe.pexpire(queued.inbox, INBOX_TTL_MS)
            pipe.xack(self.stream, QUEUE_GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            pipe.xlen(self.stream)
            replies = await pipe.execute()
        metrics.QUEUE_DEPTH.labels(str(self.partition)).set(replies[-1])

    async def _decide(self, requests: list[domain.ReserveRequest]) -> list[Result]:
        if not requests:
            return []
        try:
            return await apply_batch(self.store, requests)
        except Exception:  # a bug: answer the callers rather than stall the partition
            log.exception("queue partition %d: a batch of %d failed", self.partition, len(requests))
            return [domain.StoreUnavailable("the reservation batch failed") for _ in requests]


def _parse(fields: dict[str, str] | None) -> QueuedRequest | None:
    if not fields:
        return None
    try:
        return parse_request(fields)
    except (KeyError, ValueError, domain.InvalidInput):
        return None


def _raise_if_cancelled(cause: BaseException | None) -> None:
    """A cancel a blocking read turned into a timeout or an empty answer is still a cancel."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError() from cause
