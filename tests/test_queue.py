"""The queue strategy: FIFO across processes, bounded waits, full partitions, takeovers.

Runs on the machine's Redis (a keyspace per test) and PostgreSQL. FIFO is checked
against the stream's own order: every answer names the stream entry of its request, so
the test can replay the pure ``domain.decide_in_order`` over all requests in entry order
and demand exactly the same verdicts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import textwrap
import time
from typing import Any, cast

import pytest

from redis_support import new_prefix, redis_engine
from stockguard import domain
from stockguard.domain import Line, ReserveRequest, StockLevel
from stockguard.engine import Engine
from stockguard.stores.redis.codec import StreamId
from stockguard.stores.redis.keys import QUEUE_GROUP
from stockguard.stores.sql.audit import audit
from stockguard.strategies.queue import QueueStrategy

pytestmark = pytest.mark.asyncio

WAIT_S_MAX = 60.0

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from stockguard import domain
    from stockguard.domain import ReserveOutcome
    from stockguard.engine import Engine

    async def main(url: str, redis_url: str, prefix: str, name: str) -> None:
        engine = await Engine.open(
            url, "queue", migrate=False, redis_url=redis_url, key_prefix=prefix, pool_size=4
        )
        print("ready", flush=True)
        sys.stdin.readline()  # the parent starts both processes' buyers together

        async def buy(n: int) -> None:
            quantity = 1 + n % 3
            request = domain.validate_reserve(f"{name}-{n}", [("FIFO", quantity)])
            answer = await engine.strategy.submit(request)
            held = isinstance(answer.result, ReserveOutcome)
            print(json.dumps({"order": request.order_id, "entry": answer.entry_id,
                              "quantity": quantity, "held": held,
                              "kind": "held" if held else answer.result.kind}), flush=True)

        buyers = []
        for wave in range(6):  # in waves, so the two processes' requests interleave
            buyers += [asyncio.create_task(buy(wave * 25 + n)) for n in range(25)]
            await asyncio.sleep(0.02)
        await asyncio.gather(*buyers)
        await engine.close()

    asyncio.run(main(*sys.argv[1:5]))
    """
)


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def queue_of(engine: Engine) -> QueueStrategy:
    return cast(QueueStrategy, engine.strategy)


async def eventually(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S_MAX
    while not await condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


async def test_fifo_holds_across_two_processes(db_url: str, redis_url: str) -> None:
    """Two OS processes each queue 150 requests of 1-3 units, in waves, for a SKU of 200;
    both run partition workers, so either may hold the partition's lease. The verdicts
    must be exactly what deciding every request in stream order gives."""
    stock = 200
    prefix = new_prefix()
    async with redis_engine(db_url, redis_url, "queue", prefix=prefix) as engine:
        await engine.set_on_hand("FIFO", stock)
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CHILD,
                db_url,
                redis_url,
                prefix,
                name,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            for name in ("a", "b")
        ]
        try:
            for child in children:
                assert child.stdout is not None
                line = await asyncio.wait_for(child.stdout.readline(), WAIT_S_MAX)
                assert line.strip() == b"ready", line
            for child in children:
                assert child.stdin is not None
                child.stdin.write(b"go\n")
                await child.stdin.drain()
            outputs = await asyncio.wait_for(
                asyncio.gather(*(child.communicate() for child in children)), WAIT_S_MAX
            )
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
        answers = [
            json.loads(line)
            for stdout, stderr in outputs
            for line in stdout.decode().splitlines()
            if line.startswith("{")
        ]
        assert len(answers) == 300, [stderr.decode()[-2000:] for _, stderr in outputs]
        assert {a["kind"] for a in answers} <= {"held", "out-of-stock"}

        in_stream_order = sorted(answers, key=lambda a: StreamId.parse(a["entry"]))
        _, decisions = domain.decide_in_order(
            {"FIFO": StockLevel("FIFO", stock, 0, 0)},
            [
                ReserveRequest(a["order"], (Line("FIFO", a["quantity"]),), 900)
                for a in in_stream_order
            ],
        )
        assert [a["held"] for a in in_stream_order] == [d.held for d in decisions]
        origins = [a["order"][0] for a in in_stream_order]
        switches = sum(1 for x, y in itertools.pairwise(origins) if x != y)
        assert switches >= 2, "the two processes' requests are mixed in one stream"
        level = await engine.stock_of("FIFO")
        assert level.reserved == sum(a["quantity"] for a in answers if a["held"])
        assert (await audit(engine.store)).violations == []


async def test_a_caller_that_waited_too_long_gets_503_and_its_request_is_dropped(
    db_url: str, redis_url: str
) -> None:
    prefix = new_prefix()
    async with redis_engine(
        db_url, redis_url, "queue", prefix=prefix, workers=False, reply_wait_s=0.3
    ) as caller:
        await caller.set_on_hand("K", 5)
        with pytest.raises(domain.StoreUnavailable) as waited:
            await caller.reserve("late", [("K", 1)])
        assert waited.value.retry_after_s >= 1
        async with redis_engine(
            db_url, redis_url, "queue", prefix=prefix, reply_wait_s=0.3
        ) as worker:

            async def dropped() -> bool:
                return queue_of(worker).counters["queue_stale"] == 1

            await eventually(dropped, "the worker drops the request its caller gave up on")
        assert (await caller.stock_of("K")).reserved == 0
        assert await caller.list_reservations() == ([], None)


async def test_a_full_partition_answers_overloaded_at_once(db_url: str, redis_url: str) -> None:
    async with redis_engine(
        db_url, redis_url, "queue", workers=False, queue_depth_max=3, reply_wait_s=1.0
    ) as engine:
        strategy = queue_of(engine)
        await engine.set_on_hand("K", 5)
        waiting = [asyncio.create_task(engine.reserve(f"w-{n}", [("K", 1)])) for n in range(3)]
        stream = strategy.keys.queue(strategy.partition_of(_request("x", "K")))

        async def queued() -> bool:
            return int(await strategy.clients.commands.xlen(stream)) == 3

        await eventually(queued, "three requests wait in the partition")
        with pytest.raises(domain.Overloaded):
            await engine.reserve("one-too-many", [("K", 1)])
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, domain.StoreUnavailable) for r in results)


async def test_requests_a_dead_worker_had_read_are_answered_by_the_next_lease_holder(
    db_url: str, redis_url: str
) -> None:
    """A worker that read entries and died leaves them pending in the consumer group.
    Emulated by reading them with the group's consumer by hand; a worker that takes the
    lease next must read them again and answer their callers."""
    prefix = new_prefix()
    async with redis_engine(
        db_url, redis_url, "queue", prefix=prefix, workers=False, reply_wait_s=20.0
    ) as caller:
        strategy = queue_of(caller)
        commands = strategy.clients.commands
        await caller.set_on_hand("K", 5)
        stream = strategy.keys.queue(strategy.partition_of(_request("x", "K")))
        await commands.xgroup_create(stream, QUEUE_GROUP, id="0", mkstream=True)
        waiting = asyncio.create_task(caller.reserve("orphan", [("K", 2)]))

        async def queued() -> bool:
            return int(await commands.xlen(stream)) == 1

        await eventually(queued, "the request is in the stream")
        read = await commands.xreadgroup(QUEUE_GROUP, QUEUE_GROUP, {stream: ">"}, count=10)
        assert len(read[0][1]) == 1  # now pending: delivered, never acknowledged

        async with redis_engine(db_url, redis_url, "queue", prefix=prefix):
            outcome = await asyncio.wait_for(waiting, WAIT_S_MAX)
        assert outcome.created and outcome.reservation.order_id == "orphan"
        assert (await commands.xpending(stream, QUEUE_GROUP))["pending"] == 0
        assert (await caller.stock_of("K")).reserved == 2


async def test_requests_on_different_first_skus_use_their_own_partitions(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url, "queue", partitions=8) as engine:
        strategy = queue_of(engine)
        skus = [f"P{n}" for n in range(16)]
        for sku in skus:
            await engine.set_on_hand(sku, 3)
        assert len({strategy.partition_of(_request("x", sku)) for sku in skus}) > 1
        outcomes = await asyncio.gather(
            *(engine.reserve(f"o-{sku}-{n}", [(sku, 1)]) for sku in skus for n in range(4)),
            return_exceptions=True,
        )
        held = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(held) == 16 * 3
        assert all(isinstance(o, domain.OutOfStock) for o in outcomes if o not in held)
        assert (await audit(engine.store)).violations == []


def _request(order_id: str, sku: str) -> ReserveRequest:
    return domain.validate_reserve(order_id, [(sku, 1)])
