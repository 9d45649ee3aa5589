"""No problem body carries the driver's text: no SQL, no bound parameters.

A statement that dies on the server (its connection terminated while it waits for a row
lock; on SQLite, a write lock held past the busy timeout) is answered 503 with
Retry-After, and the body says what happened in words. The bound parameters of that
statement (here an order id) stay in the log.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from sqlalchemy.engine import make_url

from .support import Api, assert_no_driver_text, assert_problem

SECRET_ORDER = "order-of-another-buyer-7731"
LOCK_WAIT_POLLS_MAX = 300
POLL_S = 0.05


@asynccontextmanager
async def row_locked(db_url: str, backend: str) -> AsyncIterator[Callable[[], Awaitable[bool]]]:
    """Holds a lock on stock row A (SQLite: the database's write lock) from outside the
    service; yields ``kill_waiter()``, which ends the service's connection waiting on it
    (True once one was found)."""
    url = make_url(db_url)
    if backend == "sqlite":
        holder = sqlite3.connect(url.database or "", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")

        async def nothing_to_kill() -> bool:
            return True  # the busy timeout ends the wait by itself

        try:
            yield nothing_to_kill
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    elif backend == "postgres":
        import asyncpg

        def connect() -> Awaitable[asyncpg.Connection]:
            return asyncpg.connect(
                host=url.host, port=url.port or 5432, user=url.username, database=url.database
            )

        holder, killer = await connect(), await connect()

        async def terminate_waiter() -> bool:
            killed = await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND application_name = 'stockguard'"
                " AND wait_event_type = 'Lock'",
                url.database,
            )
            return bool(killed)

        try:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT * FROM stock_levels WHERE sku = 'A' FOR UPDATE")
            yield terminate_waiter
            await transaction.rollback()
        finally:
            await holder.close()
            await killer.close()
    else:
        import asyncmy

        async def connect_mysql() -> asyncmy.Connection:
            return await asyncmy.connect(
                host=url.host,
                port=url.port or 3306,
                user=url.username or "root",
                password=url.password or "",
                database=url.database,
                autocommit=False,
            )

        holder, killer = await connect_mysql(), await connect_mysql()

        async def kill_waiter() -> bool:
            async with killer.cursor() as cursor:
                await cursor.execute(
                    "SELECT trx_mysql_thread_id FROM information_schema.innodb_trx"
                    " WHERE trx_state = 'LOCK WAIT'"
                )
                waiting = [row[0] for row in await cursor.fetchall()]
                for thread_id in waiting:
                    await cursor.execute(f"KILL {int(thread_id)}")
            return bool(waiting)

        try:
            async with holder.cursor() as cursor:
                await cursor.execute("SELECT * FROM stock_levels WHERE sku = 'A' FOR UPDATE")
            yield kill_waiter
            await holder.rollback()
        finally:
            holder.close()
            killer.close()


async def test_a_statement_killed_on_the_server_answers_503_without_sql_or_parameters(
    api: Api, db_url: str, backend: str
) -> None:
    await api.set_stock("A", 5)
    async with row_locked(db_url, backend) as kill_waiter:
        answer_task = asyncio.create_task(
            api.client.post(
                "/v1/reservations",
                json={"order_id": SECRET_ORDER, "items": [{"sku": "A", "quantity": 1}]},
                timeout=httpx.Timeout(120.0),
            )
        )
        for _ in range(LOCK_WAIT_POLLS_MAX):
            await asyncio.sleep(POLL_S)
            if answer_task.done() or await kill_waiter():
                break
        answer = await answer_task

    body = assert_problem(answer, 503, "store-unavailable")
    assert int(answer.headers["retry-after"]) >= 1
    assert SECRET_ORDER not in answer.text
    assert_no_driver_text(answer.text)
    assert body["detail"].strip(), "the detail says what happened"
    level = await api.stock("A")
    assert (level["on_hand"], level["reserved"]) == (5, 0)
