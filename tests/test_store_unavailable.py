"""A database that cannot be reached gives typed StoreUnavailable errors, to every caller.

Callers queue for a connection on the store's own FIFO semaphore; when connects fail, each
queued caller is answered with StoreUnavailable (the HTTP layer's 503) rather than an
untyped driver error or a wait for the pool timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from stockguard import domain, strategies
from stockguard.engine import Engine
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.audit import audit
from stockguard.stores.sql.backend import Failure
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


# ---------------------------------------------------------------------------- dying connections

SQL_STRATEGIES = [
    name for name in strategies.names() if not strategies.strategy_class(name).requires
]
KILL_INTERVAL_S = 0.2
UNAVAILABLE_MIN = 5
"""StoreUnavailable answers (the kills hit) to see before the load may stop."""
WAVES_MAX = 400
WAVE_SIZE = 40
WAVES_MIN = 10
SKUS = ("K0", "K1", "K2", "K3")
ON_HAND = 95
"""Less than WAVES_MIN waves ask for: the last ones are refused as out of stock."""


async def _terminate_backends_until(stop: asyncio.Event, db_url: str) -> int:
    """``pg_terminate_backend`` of every stockguard connection to the test database,
    every ``KILL_INTERVAL_S``; the number of rounds that terminated at least one."""
    import asyncpg

    url = make_url(db_url)
    killer = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )
    rounds = 0
    try:
        while not stop.is_set():
            killed = await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()"
                " AND application_name = 'stockguard'",
                url.database,
            )
            rounds += 1 if killed else 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), KILL_INTERVAL_S)
    finally:
        await killer.close()
    return rounds


@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("strategy", SQL_STRATEGIES)
async def test_reservations_while_connections_are_terminated_get_typed_answers_only(
    db_url: str, strategy: str
) -> None:
    """Load on reserve while a loop kills the pool's server connections: every answer is a
    hold, OutOfStock or StoreUnavailable (never an untyped driver error), every hold that
    was answered is in the tables, the audit is clean, and a connection that failed as lost
    is discarded, never checked back in to the pool (the rounds after the storm succeed)."""
    engine = await Engine.open(db_url, strategy, migrate=False, pool_size=6)
    broken: dict[int, object] = {}  # kept alive: no id is reused meanwhile
    returned_broken: list[str] = []
    sync_engine = engine.store.engine.sync_engine

    def on_error(context: Any) -> None:
        if context.connection is None or context.sqlalchemy_exception is None:
            return
        if engine.store.backend.classify(context.sqlalchemy_exception) is Failure.UNAVAILABLE:
            dbapi_connection = context.connection.connection.dbapi_connection
            broken[id(dbapi_connection)] = dbapi_connection

    def on_checkin(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None and id(dbapi_connection) in broken:
            returned_broken.append(repr(dbapi_connection))

    event.listen(sync_engine, "handle_error", on_error)
    event.listen(sync_engine.pool, "checkin", on_checkin)
    try:
        for sku in SKUS:
            await engine.set_on_hand(sku, ON_HAND)
        outcomes: Counter[str] = Counter()
        untyped: list[str] = []
        held: set[str] = set()

        async def reserve(number: int) -> None:
            sku = SKUS[number % len(SKUS)]
            try:
                outcome = await engine.reserve(f"o{number}", [(sku, 1)])
            except (domain.OutOfStock, domain.StoreUnavailable) as error:
                outcomes[error.kind] += 1
            except Exception as error:  # what the issue saw: an untyped driver error
                untyped.append(f"{type(error).__module__}.{type(error).__name__}: {error}"[:300])
            else:
                outcomes["held"] += 1
                held.add(outcome.reservation.id)

        stop = asyncio.Event()
        killer = asyncio.create_task(_terminate_backends_until(stop, db_url))
        number = 0
        try:
            for _wave in range(WAVES_MAX):
                await asyncio.gather(*(reserve(number + i) for i in range(WAVE_SIZE)))
                number += WAVE_SIZE
                if killer.done() or (
                    number >= WAVES_MIN * WAVE_SIZE
                    and outcomes["store-unavailable"] >= UNAVAILABLE_MIN
                ):
                    break
        finally:
            stop.set()
            rounds = await killer

        assert untyped == [], f"{len(untyped)} untyped errors, e.g. {untyped[:3]}"
        assert rounds >= 1, "the loop never terminated a connection of the engine"
        assert returned_broken == [], "a connection that lost its server went back to the pool"
        # After the storm: every pooled connection answers (a broken one returned to the
        # pool would fail here), enough rounds to check out each of them.
        for _ in range(3):
            await asyncio.gather(*(engine.stock_of(sku) for sku in SKUS * 3))
        await engine.strategy.settle()
        report = await audit(engine.store)
        assert report.violations == []
        assert report.oversold_units == 0
        async with engine.store.transaction(read_only=True) as tx:
            rows = (
                await tx.connection.execute(
                    select(t.reservations.c.id).where(t.reservations.c.status == "held")
                )
            ).scalars()
            in_tables = set(rows)
        assert held <= in_tables, "an answered hold is missing from the tables"
    finally:
        await engine.close()
