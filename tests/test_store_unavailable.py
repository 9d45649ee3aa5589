"""A database that cannot be reached gives typed StoreUnavailable errors, to every caller.

Callers queue for a connection on the store's own FIFO semaphore; when connects fail, each
queued caller is answered with StoreUnavailable (the HTTP layer's 503) rather than an
untyped driver error or a wait for the pool timeout.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from stockguard import domain
from stockguard.stores.sql.store import SqlStore

pytestmark = pytest.mark.asyncio


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "url_template",
    ["postgresql://postgres@127.0.0.1:{port}/test", "mysql://root@127.0.0.1:{port}/test"],
)
async def test_fifty_concurrent_callers_on_a_dead_server_all_get_store_unavailable(
    url_template: str,
) -> None:
    store = SqlStore.open(url_template.format(port=closed_port()), pool_size=2)

    async def read() -> str:
        try:
            await store.stock(["A"])
        except domain.StoreUnavailable as error:
            return error.kind
        return "answered"

    try:
        kinds = await asyncio.gather(*(read() for _ in range(50)))
    finally:
        await store.close()
    assert kinds == ["store-unavailable"] * 50
