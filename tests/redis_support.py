"""Helpers of the Redis tests: a redis-server of the test's own, keyspaces, engines.

The machine's Redis on 6379 is shared with other test sessions: tests use it only
through a keyspace of their own (a random prefix, deleted afterwards) and never stop it.
A test that must kill Redis starts its OWN ``redis-server`` on a free port instead.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from stockguard.engine import Engine
from stockguard.stores.redis.client import drop_keyspace

START_S_MAX = 20.0


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def new_prefix() -> str:
    return f"sg-test-{uuid.uuid4().hex[:12]}"


class RedisProcess:
    """A throwaway redis-server: its own port, directory and persistence settings."""

    def __init__(self, workdir: Path, *, appendonly: bool, appendfsync: str = "everysec") -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.workdir = workdir
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.appendfsync,
                "--dir", str(self.workdir),
                "--logfile", str(self.workdir / "redis.log"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + START_S_MAX
        try:
            while True:
                try:
                    if await client.ping():
                        info: Any = await client.info("persistence")
                        if not info.get("loading"):
                            return
                except (aioredis.ConnectionError, aioredis.BusyLoadingError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {self.port} did not start")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync — a crash."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(self.process.wait(), 10)
        self.process = None

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await asyncio.wait_for(self.process.wait(), 10)
        self.process = None


@asynccontextmanager
async def own_redis(
    workdir: Path, *, appendonly: bool = False, appendfsync: str = "everysec"
) -> AsyncIterator[RedisProcess]:
    server = RedisProcess(workdir, appendonly=appendonly, appendfsync=appendfsync)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def redis_engine(
    db_url: str, redis_url: str, strategy: str = "redis", prefix: str | None = None, **options: Any
) -> AsyncIterator[Engine]:
    """An engine of a Redis strategy on a keyspace of its own, dropped afterwards
    (unless ``prefix`` was given: then the caller owns the keyspace)."""
    own = prefix is None
    key_prefix = new_prefix() if prefix is None else prefix
    engine = await Engine.open(
        db_url, strategy, migrate=False, redis_url=redis_url, key_prefix=key_prefix, **options
    )
    try:
        yield engine
    finally:
        await engine.close()
        if own:
            await drop_keyspace(redis_url, key_prefix)
