"""Loading a keyspace from SQL: cold start, and recovery after Redis lost its data.

A load runs only while the load marker is absent (then every script refuses, so nothing
sells on a half-built keyspace), and by one process at a time (a lock). It

1. deletes whatever is left of the redis strategy's keys in this keyspace;
2. in ONE SQL transaction, starts a new epoch on the stream position row (locking it,
   which also waits out and then fences any persister of the old epoch) and reads every
   stock level, every held reservation with its lines, and every order_id;
3. writes them into Redis in pipelined chunks, creates the stream's consumer group;
4. sets the marker to the new epoch, last: from then on, Redis sells.

Events that were in Redis but not yet in SQL when Redis lost its data are gone; the
ones a persister was writing when the load began either committed before the snapshot
(so the load sees them) or are fenced by the epoch. docs/durability.md says what that
means for answered reservations.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from stockguard import domain
from stockguard.domain import Status
from stockguard.domain.locations import Location, LocationLevel
from stockguard.stores.redis.client import RedisClients, delete_matching, unavailable_on_error
from stockguard.stores.redis.codec import encode_allocations, encode_backordered, encode_lines
from stockguard.stores.redis.keys import PERSIST_GROUP, KeyLayout
from stockguard.stores.redis.lease import Lease
from stockguard.stores.redis.sql_apply import read_offset, start_epoch
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.store import SqlStore
from stockguard.stores.sql.tx import Tx


class LoadingElsewhere(domain.StoreUnavailable):
    """Another process holds the load lock: the expected race of N workers starting at
    once, not a fault (logged at INFO; requests answer 503 until the load is done)."""


LOAD_LOCK_MS = 600_000
"""A load that takes longer than this loses its lock (then another may start over)."""
PAGE_ROWS = 5_000
"""Rows read per query and written per Redis pipeline."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    epoch: str
    previous_epoch: str | None
    """The load this one replaces; None on a first start (nothing was lost)."""
    skus: int
    held: int
    orders: int
    keys_replaced: int


async def ensure_loaded(
    clients: RedisClients, store: SqlStore, keys: KeyLayout
) -> LoadReport | None:
    """Loads the keyspace from SQL if it is not loaded; None if it already was."""
    redis = clients.commands
    async with unavailable_on_error("load"):
        if await redis.exists(keys.loaded):
            return None
        lock = Lease(redis, keys.loading, LOAD_LOCK_MS)
        if not await lock.hold():
            raise LoadingElsewhere("another process is loading Redis from SQL", 5)
        try:
            if await redis.exists(keys.loaded):
                return None
            return await _load(clients, store, keys)
        finally:
            await lock.release()


async def _load(clients: RedisClients, store: SqlStore, keys: KeyLayout) -> LoadReport:
    redis = clients.commands
    replaced = 0
    for pattern in keys.strategy_patterns:
        replaced += await delete_matching(redis, pattern)
    replaced += int(await redis.unlink(*keys.strategy_singletons))
    epoch = uuid.uuid4().hex
    async with store.transaction() as tx:
        now_ms = await tx.now_ms()
        previous = await read_offset(tx, keys.events, lock=True)
        await start_epoch(tx, keys.events, epoch, now_ms)
        await write_locations(clients, keys, await tx.locations())
        skus = await _load_levels(tx, clients, keys)
        await _load_located(tx, clients, keys)
        held = await _load_held(tx, clients, keys)
        orders = await _load_orders(tx, clients, keys)
        await tx.commit()
    await redis.xgroup_create(keys.events, PERSIST_GROUP, id="0", mkstream=True)
    await redis.set(keys.loaded, epoch)
    return LoadReport(epoch, previous.epoch if previous else None, skus, held, orders, replaced)


async def _load_levels(tx: Tx, clients: RedisClients, keys: KeyLayout) -> int:
    count = 0
    after = ""
    while True:
        rows = (
            await tx.connection.execute(
                select(t.stock_levels)
                .where(t.stock_levels.c.sku > after)
                .order_by(t.stock_levels.c.sku)
                .limit(PAGE_ROWS)
            )
        ).all()
        if not rows:
            return count
        pipe = clients.commands.pipeline(transaction=False)
        capped: list[str] = []
        for row in rows:
            pipe.hset(keys.stock(row.sku), mapping=level_fields(row))
            if row.customer_max is not None:
                capped.append(row.sku)
        pipe.sadd(keys.skus, *[row.sku for row in rows])
        await pipe.execute()
        for sku in capped:  # caps are few: one aggregate per capped SKU
            counts = await sku_customer_counts(tx, sku)
            if counts:
                await clients.commands.hset(keys.customers(sku), mapping=counts)
        count += len(rows)
        after = rows[-1].sku


def level_fields(row: Any) -> dict[Any, Any]:
    """A ``stock_levels`` row as its Redis hash: the policy fields reserve.lua reads
    only where the SKU has them (docs/design.md#stock-policy)."""
    fields: dict[Any, Any] = {
        "on_hand": row.on_hand,
        "reserved": row.reserved,
        "version": row.version,
    }
    if row.safety_stock:
        fields["safety"] = row.safety_stock
    if row.customer_max is not None:
        fields["cap"] = row.customer_max
    if row.backorder_max:  # docs/design.md#backorders; absent = 0, like safety
        fields["backorder"] = row.backorder_max
    if row.located:  # docs/locations.md: reserve.lua then reads the other locations
        fields["located"] = 1
    return fields


def located_value(level: LocationLevel) -> str:
    """A level at another location as its field of ``KeyLayout.located`` (the Lua
    ``decode_level`` reads it)."""
    return (
        f"{level.on_hand} {level.reserved} {level.version} {level.safety_stock}"
        f" {level.backorder_max}"
    )


def locations_fields(locations: Mapping[str, Location]) -> dict[str, str]:
    """Every location as ``KeyLayout.locations`` holds it: ``priority active rank``, the
    rank being the code's place in code order (reserve.lua breaks ties on it, as
    ``domain.locations`` does on the code, without comparing strings in Lua)."""
    ranks = {code: rank for rank, code in enumerate(sorted(locations))}
    return {
        code: f"{place.priority} {1 if place.active else 0} {ranks[code]}"
        for code, place in locations.items()
    }


async def write_locations(
    clients: RedisClients, keys: KeyLayout, locations: Mapping[str, Location]
) -> None:
    """Replaces the Redis copy of the locations in one atomic step (MULTI): every script
    sees the old set or the new one (docs/locations.md#deactivating)."""
    pipe = clients.commands.pipeline(transaction=True)
    pipe.delete(keys.locations)
    pipe.hset(keys.locations, mapping=locations_fields(locations))  # type: ignore[arg-type]
    await pipe.execute()


async def _load_located(tx: Tx, clients: RedisClients, keys: KeyLayout) -> None:
    """Every level at a location other than the default one (docs/locations.md)."""
    after = ""
    while True:
        rows = (
            await tx.connection.execute(
                select(t.stock_levels.c.sku)
                .where(t.stock_levels.c.located == True, t.stock_levels.c.sku > after)  # noqa: E712
                .order_by(t.stock_levels.c.sku)
                .limit(PAGE_ROWS)
            )
        ).all()
        if not rows:
            return
        levels = await tx.location_levels([row.sku for row in rows])
        pipe = clients.commands.pipeline(transaction=False)
        for sku, by_code in levels.items():
            if by_code:
                mapping = {code: located_value(level) for code, level in by_code.items()}
                pipe.hset(keys.located(sku), mapping=mapping)  # type: ignore[arg-type]
        await pipe.execute()
        after = rows[-1].sku


async def sku_customer_counts(tx: Tx, sku: str) -> dict[Any, Any]:
    """customer_id -> units held or confirmed of ``sku``: a capped SKU's Redis counts."""
    r, ln = t.reservations.c, t.reservation_lines.c
    rows = await tx.connection.execute(
        select(r.customer_id, func.sum(ln.quantity))
        .select_from(t.reservations.join(t.reservation_lines, ln.reservation_id == r.id))
        .where(
            ln.sku == sku,
            r.customer_id.is_not(None),
            r.status.in_([Status.HELD.value, Status.CONFIRMED.value]),
        )
        .group_by(r.customer_id)
    )
    return {str(customer): int(units) for customer, units in rows}


async def customer_counts(store: SqlStore, sku: str) -> dict[str, int]:
    async with store.transaction(read_only=True) as tx:
        counts = await sku_customer_counts(tx, sku)
    return {str(customer): int(units) for customer, units in counts.items()}


def write_held(pipe: Any, keys: KeyLayout, reservation: domain.Reservation) -> None:
    """The Redis copy of a held reservation: its hash and its place in the expiry index.

    The one writer of that layout outside the Lua scripts (load and reconcile share it).
    ``backordered`` only when some line has any, as reserve.lua writes it
    (docs/design.md#backorders).
    """
    fields: dict[Any, Any] = {
        "order_id": reservation.order_id,
        "customer_id": reservation.customer_id or "",
        "status": Status.HELD.value,
        "lines": encode_lines(reservation.lines),
        "expires_at": reservation.expires_at_ms,
        "created_at": reservation.created_at_ms,
    }
    backordered = encode_backordered(reservation.lines)
    if backordered:
        fields["backordered"] = backordered
    allocated = encode_allocations(reservation.lines)
    if allocated:  # docs/locations.md#model: where located lines drew from
        fields["alloc"] = allocated
    pipe.hset(keys.reservation(reservation.id), mapping=fields)
    pipe.zadd(keys.due, {reservation.id: reservation.expires_at_ms})


async def _load_held(tx: Tx, clients: RedisClients, keys: KeyLayout) -> int:
    count = 0
    after_seq = -1
    while True:
        rows = (
            await tx.connection.execute(
                select(t.reservations)
                .where(
                    t.reservations.c.status == Status.HELD.value,
                    t.reservations.c.seq > after_seq,
                )
                .order_by(t.reservations.c.seq)
                .limit(PAGE_ROWS)
            )
        ).all()
        if not rows:
            return count
        pipe = clients.commands.pipeline(transaction=False)
        for reservation in await tx.reservations_from_rows(rows):
            write_held(pipe, keys, reservation)
        await pipe.execute()
        count += len(rows)
        after_seq = rows[-1].seq


async def _load_orders(tx: Tx, clients: RedisClients, keys: KeyLayout) -> int:
    """Every order_id ever reserved: idempotency outlives a reservation's Redis copy."""
    count = 0
    after_seq = -1
    while True:
        rows = (
            await tx.connection.execute(
                select(t.reservations.c.seq, t.reservations.c.id, t.reservations.c.order_id)
                .where(t.reservations.c.seq > after_seq)
                .order_by(t.reservations.c.seq)
                .limit(PAGE_ROWS)
            )
        ).all()
        if not rows:
            return count
        await clients.commands.mset({keys.order(row.order_id): row.id for row in rows})
        count += len(rows)
        after_seq = rows[-1].seq
