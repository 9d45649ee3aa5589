"""I5 for the redis strategy: what a Redis crash keeps of answered reservations.

The test starts its own redis-server with one persistence setting. A child process
reserves in a loop (persister running inside it) and prints each reservation id only
after the engine answered. The test SIGKILLs redis-server mid-load (no shutdown, no
final fsync), then the child, restarts redis-server on the same directory, and counts
which answered reservations are in Redis after the restart, and which are in SQL once a
fresh engine has recovered (the persister drains what Redis kept; an empty Redis is
loaded from SQL). docs/durability.md quotes the figures this test prints.

- ``appendfsync always``: Redis fsyncs the AOF before it answers, so every answered
  reservation survives; asserted.
- ``appendfsync everysec``: a killed *process* loses nothing the kernel already has
  (the write() happens before the answer; only the fsync is deferred); an OS crash or
  power cut could lose up to about a second, which a test cannot provoke. Measured.
- no AOF: Redis comes back empty; what SQL holds is what the persister had copied.
  Measured; the loss is the persister's lag at the crash.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from redis_support import new_prefix, own_redis, redis_engine
from stockguard.domain import Status
from stockguard.stores.redis.keys import KeyLayout
from stockguard.stores.redis.reconcile import reconcile
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.audit import audit
from stockguard.strategies.redis import RedisStrategy

pytestmark = pytest.mark.asyncio

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from stockguard import domain
    from stockguard.engine import Engine

    async def main(url: str, redis_url: str, prefix: str) -> None:
        engine = await Engine.open(
            url, "redis", migrate=False, redis_url=redis_url, key_prefix=prefix
        )
        async def buyer(worker: int) -> None:
            for n in range(1_000_000):
                try:
                    outcome = await engine.reserve(f"d-{worker}-{n}", [("DURABLE", 1)])
                except domain.StoreUnavailable:
                    await asyncio.sleep(0.05)
                    continue
                print(outcome.reservation.id, flush=True)
        await asyncio.gather(*(buyer(w) for w in range(8)))

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
    """
)

ANSWERS_BEFORE_CRASH = 2_000


async def count_in_redis(url: str, prefix: str, reservation_ids: list[str]) -> int:
    """How many of the reservations the restarted Redis holds, before anyone touches it."""
    client = aioredis.Redis.from_url(url)
    keys = KeyLayout(prefix)
    try:
        pipe = client.pipeline(transaction=False)
        for rid in reservation_ids:
            pipe.exists(keys.reservation(rid))
        return int(sum(await pipe.execute()))
    finally:
        await client.aclose()


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("mode", ["always", "everysec", "no-aof"])
async def test_answered_reservations_after_a_redis_crash(
    db_url: str, tmp_path: Path, mode: str
) -> None:
    prefix = new_prefix()
    async with own_redis(
        tmp_path / "redis",
        appendonly=mode != "no-aof",
        appendfsync="everysec" if mode == "no-aof" else mode,
    ) as server:
        async with redis_engine(db_url, server.url, prefix=prefix) as engine:
            await engine.set_on_hand("DURABLE", 1_000_000)
            await engine.strategy.settle()

        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, db_url, server.url, prefix,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        answered: list[str] = []
        try:
            assert child.stdout is not None
            while len(answered) < ANSWERS_BEFORE_CRASH:
                line = await asyncio.wait_for(child.stdout.readline(), 60)
                if not line:
                    break
                answered.append(line.decode().strip())
            await server.kill()  # the crash: everything the child was told is in `answered`…
        finally:
            child.send_signal(signal.SIGKILL)
            rest, stderr = await child.communicate()
        answered += rest.decode().split()  # …plus what it printed before the crash reached it
        assert len(answered) >= ANSWERS_BEFORE_CRASH, stderr.decode()[-2000:]

        await server.start()
        in_redis = await count_in_redis(server.url, prefix, answered)
        async with redis_engine(db_url, server.url, prefix=prefix) as engine:
            strategy = cast(RedisStrategy, engine.strategy)
            commands = strategy.clients.commands
            await strategy.settle()
            async with engine.store.transaction(read_only=True) as tx:
                rows = await tx.connection.execute(
                    select(t.reservations.c.id).where(t.reservations.c.status == Status.HELD.value)
                )
                in_sql = {row.id for row in rows}
            lost = len(set(answered) - in_sql)
            print(
                f"\nappendfsync={mode}: {len(answered)} answered, {in_redis} in Redis after "
                f"restart, {len(set(answered) & in_sql)} in SQL after recovery, {lost} lost"
            )
            report = await audit(engine.store)
            assert report.violations == [] and report.oversold_units == 0
            assert (await reconcile(strategy.clients, engine.store, strategy.keys)).consistent
            assert await commands.xlen(strategy.keys.dead) == 0
            if mode == "always":
                assert in_redis == len(answered) and lost == 0
            level = await engine.stock_of("DURABLE")
            assert level.reserved == len(in_sql)
            await commands.delete(strategy.keys.loaded)  # the server goes with tmp_path
