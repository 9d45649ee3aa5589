"""What ``stockguard reconcile`` and ``stockguard persist`` do (cli.py only prints)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from stockguard.stores.redis.client import connect
from stockguard.stores.redis.keys import KeyLayout
from stockguard.stores.redis.persister import TRANSIENT, Persister
from stockguard.stores.redis.reconcile import ReconcileReport, reconcile
from stockguard.stores.redis.scripts import load_all
from stockguard.stores.sql.store import SqlStore

UNTIL_IDLE_S_MAX = 600.0
"""``persist --until-idle`` gives up (exit 1) if the stream is not drained by then."""


async def run_reconcile(db_url: str, redis_url: str, prefix: str, repair: bool) -> ReconcileReport:
    store = SqlStore.open(db_url, pool_size=2)
    clients = connect(redis_url, connections_max=4)
    try:
        await store.migrate()
        await load_all(clients.commands)
        return await reconcile(clients, store, KeyLayout(prefix), repair=repair)
    finally:
        await clients.close()
        await store.close()


async def run_persister(db_url: str, redis_url: str, prefix: str, until_idle: bool) -> bool:
    """Persists until SIGINT/SIGTERM, or with ``until_idle`` until the stream is drained.

    Returns False when ``until_idle`` ran out of time (Redis not loaded, another process
    holding the lease, or the database refusing) before the stream was drained.
    """
    store = SqlStore.open(db_url, pool_size=2)
    clients = connect(redis_url, connections_max=4)
    persister = Persister(clients, store, KeyLayout(prefix))
    loop = asyncio.get_running_loop()
    for stop in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop, persister.stop)
    try:
        await load_all(clients.commands)
        if not until_idle:
            await persister.run()
            return True
        return await _until_idle(persister)
    finally:
        for stop in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(stop)
        with contextlib.suppress(Exception):
            await persister.lease.release()
        await clients.close()
        await store.close()


async def _until_idle(persister: Persister) -> bool:
    deadline = time.monotonic() + UNTIL_IDLE_S_MAX
    while time.monotonic() < deadline:
        try:
            handled = await persister.step()
        except TRANSIENT:
            handled = -1
        if handled == 0:
            return True
        if handled < 0:
            await asyncio.sleep(0.2)
    return False
