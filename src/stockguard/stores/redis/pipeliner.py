"""Auto-pipelining: script calls made while others are on the wire leave together.

One script call costs Redis a few microseconds but costs the Python client a round trip
of its own: a connection checkout, a send, a wake-up, a parse. Under a burst, calls that
arrive while ``pipelines_max`` pipelines are in flight queue here and go out as ONE
pipeline (one send, one read of all replies) as soon as a slot frees. A lone call goes
out at once, so a quiet system pays nothing. Each call is still its own atomic script:
a pipeline is not a transaction, and a failing call fails only its own caller, except a
lost connection, which fails every call that was on it (each answers StoreUnavailable).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from stockguard.stores.redis.client import UNAVAILABLE_ERRORS, unavailable
from stockguard.stores.redis.scripts import Script

PIPELINE_CALLS_MAX = 512
"""Calls sent in one pipeline; the rest wait for the next one."""
PIPELINES_MAX = 4
"""Pipelines in flight at once (each holds one connection)."""


@dataclass(frozen=True, slots=True)
class _Call:
    script: Script
    keys: list[str]
    args: list[str]
    future: asyncio.Future[Any]


class Pipeliner:
    def __init__(self, client: Redis, pipelines_max: int = PIPELINES_MAX) -> None:
        assert 1 <= pipelines_max <= 64
        self.client = client
        self.pipelines_max = pipelines_max
        self._queue: deque[_Call] = deque()
        self._senders: set[asyncio.Task[None]] = set()

    async def call(self, script: Script, keys: list[str], args: list[str]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(script, keys, args, future))
        if len(self._senders) < self.pipelines_max:
            sender = asyncio.create_task(self._send_while_queued())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await future

    async def _send_while_queued(self) -> None:
        while self._queue:
            batch = [
                self._queue.popleft() for _ in range(min(len(self._queue), PIPELINE_CALLS_MAX))
            ]
            await self._send(batch)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results = await self._execute(batch)
            forgotten = [c for c, r in zip(batch, results, strict=True) if _noscript(r)]
            if forgotten:  # Redis restarted or flushed its scripts: load once, resend those
                for script in {c.script.name: c.script for c in forgotten}.values():
                    await script.load(self.client)
                for call, result in zip(forgotten, await self._execute(forgotten), strict=True):
                    _answer(call, result)
            for call, result in zip(batch, results, strict=True):
                if not _noscript(result):
                    _answer(call, result)
        except UNAVAILABLE_ERRORS as error:
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(unavailable(call.script.name, error))
        except BaseException as error:  # a bug or a cancel: no caller may wait forever
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(RuntimeError(f"pipeline failed: {error!r}"))
            raise

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for call in batch:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results


def _noscript(result: Any) -> bool:
    return isinstance(result, redis_errors.NoScriptError)


def _answer(call: _Call, result: Any) -> None:
    if call.future.done():
        return  # its caller was cancelled
    if isinstance(result, UNAVAILABLE_ERRORS):
        call.future.set_exception(unavailable(call.script.name, result))
    elif isinstance(result, BaseException):
        call.future.set_exception(result)
    else:
        call.future.set_result(result)
