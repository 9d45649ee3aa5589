"""Connecting to Redis with explicit limits, and turning its failures into domain errors.

Two clients share nothing: ``commands`` for short calls (scripts, reads) with a short
socket timeout, and ``blocking`` for calls that wait on purpose (BLPOP, XREADGROUP
BLOCK), whose socket timeout must outlast the wait. Retries are off: a script that timed
out may have run, and running ``adjust`` twice would add twice; a failed call answers
503 and the next call reconnects by itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stockguard import domain
from stockguard.stores.redis.keys import KeyLayout

CONNECTIONS_MAX = 32
"""Connections per client and process; callers beyond this wait for one (POOL_WAIT_S).
The hot path never makes them wait: its calls share a few pipelines (pipeliner.py), which
matters because the pool's wait is unfair — a caller arriving as a connection frees takes
it before the one woken for it, and under a burst some callers starve for seconds."""
POOL_WAIT_S = 5.0
COMMAND_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
BLOCK_S_MAX = 30.0
"""Longest wait a blocking call may ask for; its socket timeout is this plus a margin."""
RETRY_AFTER_S = 1

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError (Redis still reading its AOF)
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica after failover
    redis_errors.OutOfMemoryError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
)


@dataclass(frozen=True, slots=True)
class RedisClients:
    commands: Redis
    blocking: Redis

    async def close(self) -> None:
        await self.commands.aclose()
        await self.blocking.aclose()


def _client(url: str, socket_timeout_s: float, connections_max: int) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=connections_max,
        timeout=POOL_WAIT_S,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=10,
        decode_responses=True,
        client_name="stockguard",
    )
    return Redis(connection_pool=pool)


def connect(url: str, connections_max: int = CONNECTIONS_MAX) -> RedisClients:
    """Clients for ``url``; nothing is sent until the first call."""
    assert 1 <= connections_max <= 1_024
    return RedisClients(
        commands=_client(url, COMMAND_TIMEOUT_S, connections_max),
        blocking=_client(url, BLOCK_S_MAX + COMMAND_TIMEOUT_S, connections_max),
    )


def unavailable(what: str, error: BaseException) -> domain.StoreUnavailable:
    """The 503 for a Redis failure, said in words: the client's own text (addresses,
    server messages) goes to the log, never into an answer."""
    logger.warning("redis %s failed: %s: %s", what, type(error).__name__, error)
    return domain.StoreUnavailable(
        f"redis cannot answer right now ({what}: {type(error).__name__})",
        retry_after_s=RETRY_AFTER_S,
    )


@asynccontextmanager
async def unavailable_on_error(what: str) -> AsyncIterator[None]:
    """Redis down, loading, read-only or out of memory → ``StoreUnavailable`` (503)."""
    try:
        yield
    except UNAVAILABLE_ERRORS as error:
        raise unavailable(what, error) from error


logger = logging.getLogger("stockguard.store")

SCAN_COUNT = 1_000


async def delete_matching(client: Redis, pattern: str) -> int:
    """Deletes every key matching ``pattern`` (SCAN, never KEYS); returns how many."""
    deleted = 0
    batch: list[str] = []
    async for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


async def delete_keyspace(client: Redis, keys: KeyLayout) -> int:
    """Deletes every key of one keyspace, and nothing else.

    The load marker goes first, in one step: from then on every script refuses, so the
    keyspace is never seen half-deleted (a stock key gone while the marker remains would
    answer "unknown SKU" instead of "unavailable")."""
    return int(await client.unlink(keys.loaded)) + await delete_matching(client, keys.match_all)


async def drop_keyspace(url: str, prefix: str) -> int:
    """Connects, deletes one keyspace, disconnects: for tests and ``reconcile --drop``."""
    client = _client(url, COMMAND_TIMEOUT_S, 2)
    try:
        return await delete_keyspace(client, KeyLayout(prefix))
    finally:
        await client.aclose()
