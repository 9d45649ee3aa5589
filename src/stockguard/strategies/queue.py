"""Reservations through a Redis Stream, applied in FIFO order by one worker per partition.

docs/design.md#seed-000 judged a FIFO queue "the right answer" and had no time to build
it; docs/design.md#seed-004 tried RabbitMQ. Here a request is appended to the stream of its
partition (crc32 of its first, smallest SKU, modulo ``partitions``: every request whose
lines start with the same SKU is ordered in one place), and the one worker holding that
partition's lease — in whichever process — applies the waiting requests in stream order
through the coalescing batch path: one transaction per batch, rows locked once, each
request granted all-or-nothing at its turn (``queue_worker.py``). FIFO therefore holds
across every server process, not only inside one.

The answer comes back on the caller process's inbox (one Redis list per process, each
answer naming its request; one reader task drains it) and the caller waits for it at
most ``reply_wait_s``: then it answers StoreUnavailable (503 with Retry-After), and the
worker drops the request unapplied if it has not reached it yet. A request already
applied when its caller gave up stays held; retrying with the same order_id returns it.

Why an inbox per process rather than a reply key per request: a caller blocked in BLPOP
holds a Redis connection for its whole wait, so ten thousand waiting buyers would need
ten thousand connections; one reader per process serves them all with one.

Only holds are queued. Confirms and releases need no order across processes (each names
one reservation), so they take the coalescing strategy's in-process batches (one
transaction per batch instead of one per payer); expiry, reads and admin writes go to
the SQL store. SQL is the store of record: there is nothing to settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import zlib
from typing import Any

from stockguard import domain
from stockguard.domain import Reservation, ReserveOutcome, ReserveRequest
from stockguard.stores.redis.client import BLOCK_S_MAX, connect, unavailable_on_error
from stockguard.stores.redis.keys import KeyLayout, default_prefix
from stockguard.stores.redis.pipeliner import Pipeliner
from stockguard.stores.redis.replies import Answer, decode_answer, request_fields
from stockguard.stores.redis.scripts import load_all, script
from stockguard.stores.sql.store import SqlStore
from stockguard.strategies.base import Strategy
from stockguard.strategies.coalescing import CoalescingStrategy
from stockguard.strategies.queue_worker import LEASE_MS_DEFAULT, PartitionWorker

log = logging.getLogger("stockguard.queue")

PARTITIONS_DEFAULT = 4
PARTITIONS_MAX = 64
BATCH_SIZE_MAX = 1_000
"""Requests one worker decides in one transaction."""
QUEUE_DEPTH_MAX = 20_000
"""Requests waiting per partition; beyond it a request is answered Overloaded (429)."""
REPLY_WAIT_S_DEFAULT = 10.0
INBOX_POP_MAX = 1_000
INBOX_BLOCK_S = 1
CLOSE_S_MAX = 5.0


class QueueStrategy(Strategy):
    store: SqlStore
    memory = False
    name = "queue"
    requires = ("redis",)

    def __init__(
        self,
        store: SqlStore,
        *,
        redis_url: str,
        key_prefix: str | None = None,
        partitions: int = PARTITIONS_DEFAULT,
        reply_wait_s: float = REPLY_WAIT_S_DEFAULT,
        batch_size_max: int = BATCH_SIZE_MAX,
        queue_depth_max: int = QUEUE_DEPTH_MAX,
        workers: bool = True,
        lease_ms: int = LEASE_MS_DEFAULT,
        **options: Any,
    ) -> None:
        super().__init__(store, **options)
        assert 1 <= partitions <= PARTITIONS_MAX
        assert 0.1 <= reply_wait_s <= BLOCK_S_MAX
        assert 1 <= batch_size_max <= 10_000
        assert 1 <= queue_depth_max <= 1_000_000
        self.burst_in_flight = batch_size_max
        self.keys = KeyLayout(key_prefix or default_prefix())
        self.partitions = partitions
        self.reply_wait_s = reply_wait_s
        self.queue_depth_max = queue_depth_max
        self.clients = connect(redis_url)
        self.pipeliner = Pipeliner(self.clients.commands)
        self.inbox = self.keys.inbox(uuid.uuid4().hex)
        self.workers = [
            PartitionWorker(
                self.clients,
                store,
                self.keys,
                n,
                batch_max=batch_size_max,
                reply_wait_ms=int(reply_wait_s * 1000),
                counters=self.counters,
                lease_ms=lease_ms,
            )
            for n in range(partitions)
        ] if workers else []  # fmt: skip
        self.transitions = CoalescingStrategy(store, group_count=1)
        """Confirms and releases, batched in-process (its reservation writer stays idle)."""
        self._waiting: dict[str, asyncio.Future[Answer]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    async def start(self) -> None:
        with contextlib.suppress(domain.StoreUnavailable):  # Redis down: calls reload later
            async with unavailable_on_error("start"):
                await load_all(self.clients.commands)
        await self.transitions.start()
        self._tasks = [asyncio.create_task(self._drain_inbox(), name=f"stockguard-{self.inbox}")]
        self._tasks += [
            asyncio.create_task(worker.run(), name=f"stockguard-queue-{worker.partition}")
            for worker in self.workers
        ]

    async def ping(self) -> None:
        async with unavailable_on_error("ping"):
            await self.clients.commands.ping()

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for worker in self.workers:
            worker.stop()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=CLOSE_S_MAX)
            if pending:
                log.warning("%d queue task(s) did not stop", len(pending))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(domain.StoreUnavailable("stockguard is stopping"))
        await self.transitions.close()
        await self.clients.close()

    def partition_of(self, request: ReserveRequest) -> int:
        # crc32, not hash(): the same SKU maps to the same partition in every process.
        return zlib.crc32(request.lines[0].sku.encode()) % self.partitions

    async def confirm(self, reservation_id: str) -> Reservation:
        return await self.transitions.confirm(reservation_id)

    async def release(self, reservation_id: str) -> Reservation:
        return await self.transitions.release(reservation_id)

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        result = (await self.submit(request)).result
        if isinstance(result, ReserveOutcome):
            return result
        raise result

    async def submit(self, request: ReserveRequest) -> Answer:
        """Queues ``request`` and waits (bounded) for the worker's answer."""
        if self._closing:
            raise domain.StoreUnavailable("stockguard is stopping")
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        partition = self.partition_of(request)
        try:
            entry = await self.pipeliner.call(
                script("enqueue"),
                [self.keys.queue(partition)],
                [str(self.queue_depth_max), *request_fields(request_id, self.inbox, request)],
            )
            if entry is None:
                self.counters["queue_full"] += 1
                raise domain.Overloaded(
                    f"{self.queue_depth_max} reservations already queued in partition {partition}"
                )
            try:
                return await asyncio.wait_for(future, self.reply_wait_s)
            except TimeoutError:
                self.counters["queue_reply_timeouts"] += 1
                raise domain.StoreUnavailable(
                    f"no answer from the queue worker within {self.reply_wait_s:g}s "
                    "(retry with the same order_id)",
                    retry_after_s=1,
                ) from None
        finally:
            self._waiting.pop(request_id, None)

    async def _drain_inbox(self) -> None:
        """This process's one reader of answers: hands each to the caller waiting for it."""
        while not self._closing:
            try:
                async with unavailable_on_error("inbox"):
                    popped: Any = await self.clients.blocking.blmpop(
                        INBOX_BLOCK_S, 1, self.inbox, direction="RIGHT", count=INBOX_POP_MAX
                    )
            except domain.StoreUnavailable as error:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError() from error
                await asyncio.sleep(0.2)
                continue
            for text in popped[1] if popped else ():
                answer = decode_answer(text)
                future = self._waiting.get(answer.request_id)
                if future is not None and not future.done():
                    future.set_result(answer)
