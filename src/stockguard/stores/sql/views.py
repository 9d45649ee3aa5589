"""The read queries of the admin listings and the API's list endpoints (cosmicpython's
``views.py``): plain SELECTs with paging, no decisions and no writes. ``SqlStore``'s
``list_*`` and ``movements`` methods are these; ``MemoryStore`` has its own.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, or_, select

from stockguard import domain
from stockguard.domain import Movement, Product, Reservation, Status, StockLevel, Variant
from stockguard.stores.operations import filter_text, parse_cursor
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.tx import reservation_filters

if TYPE_CHECKING:
    from stockguard.stores.sql.store import SqlStore

LIST_LIMIT_MAX = domain.PAGE_LIMIT_MAX


async def list_reservations(
    store: SqlStore,
    *,
    status: Status | None = None,
    sku: str | None = None,
    order_id: str | None = None,
    customer_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Reservation], str | None]:
    """Newest first; ``cursor`` is the opaque position returned by the previous page."""
    assert 1 <= limit <= LIST_LIMIT_MAX
    before = parse_cursor(cursor)
    sku = filter_text(sku, "sku")
    order_id = filter_text(order_id, "order_id")
    customer_id = filter_text(customer_id, "customer_id")
    async with store.transaction(read_only=True) as tx:
        rows = (
            await tx.connection.execute(
                select(t.reservations)
                .where(reservation_filters(status, sku, order_id, customer_id, before))
                .order_by(t.reservations.c.seq.desc())
                .limit(limit + 1)
            )
        ).all()
        items = await tx.reservations_from_rows(rows[:limit])
    next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
    return items, next_cursor


async def list_stock(
    store: SqlStore, *, prefix: str | None = None, limit: int = 100, cursor: str | None = None
) -> tuple[list[StockLevel], str | None]:
    """All SKUs in code order, for admin listings."""
    assert 1 <= limit <= LIST_LIMIT_MAX
    prefix = filter_text(prefix, "prefix")
    cursor = filter_text(cursor, "cursor")
    query = select(t.stock_levels).order_by(t.stock_levels.c.sku).limit(limit + 1)
    if prefix:
        query = query.where(t.stock_levels.c.sku.startswith(prefix, autoescape=True))
    if cursor:
        query = query.where(t.stock_levels.c.sku > cursor)
    async with store.transaction(read_only=True) as tx:
        rows = (await tx.connection.execute(query)).all()
    levels = [StockLevel(r.sku, r.on_hand, r.reserved, r.version) for r in rows[:limit]]
    return levels, (levels[-1].sku if len(rows) > limit else None)


async def movements(
    store: SqlStore, sku: str, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[Movement], str | None]:
    """A SKU's ledger, newest first."""
    assert 1 <= limit <= LIST_LIMIT_MAX
    before = parse_cursor(cursor)
    query = (
        select(t.stock_movements)
        .where(t.stock_movements.c.sku == sku)
        .order_by(t.stock_movements.c.seq.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(t.stock_movements.c.seq < before)
    async with store.transaction(read_only=True) as tx:
        if not await tx.existing_skus([sku]):
            raise domain.UnknownSku([sku])
        rows = (await tx.connection.execute(query)).all()
    items = [
        Movement(r.at_ms, r.sku, r.delta, r.on_hand_after, r.reason, r.reservation_id, r.location)
        for r in rows[:limit]
    ]
    return items, (str(rows[limit - 1].seq) if len(rows) > limit else None)


async def list_products(
    store: SqlStore, *, search: str | None = None, limit: int = 50, after: str | None = None
) -> list[Product]:
    """Products whose name or one of whose SKUs contains ``search`` (any case), by name,
    then id; with ``after`` (a product id) the ones that follow it in that order (keyset
    paging: a page is as cheap at the end of the catalogue as at its start).

    For the admin page: three queries whatever the number of products (products,
    their variants, their stock), each bounded by ``limit``.
    """
    assert 1 <= limit <= LIST_LIMIT_MAX
    search = filter_text(search, "search")
    query = select(t.products).order_by(t.products.c.name, t.products.c.id).limit(limit)
    if after is not None:
        async with store.transaction(read_only=True) as tx:
            name = (
                await tx.connection.execute(
                    select(t.products.c.name).where(t.products.c.id == after)
                )
            ).scalar_one_or_none()
        if name is None:
            raise domain.InvalidInput("cursor", "names no product")
        query = query.where(
            or_(
                t.products.c.name > name,
                and_(t.products.c.name == name, t.products.c.id > after),
            )
        )
    if search:
        needle = search.lower()
        query = query.where(
            or_(
                func.lower(t.products.c.name).contains(needle, autoescape=True),
                t.products.c.id.in_(
                    select(t.product_variants.c.product_id).where(
                        func.lower(t.product_variants.c.sku).contains(needle, autoescape=True)
                    )
                ),
            )
        )
    async with store.transaction(read_only=True) as tx:
        rows = (await tx.connection.execute(query)).all()
        if not rows:
            return []
        variant_rows = (
            await tx.connection.execute(
                select(t.product_variants)
                .where(t.product_variants.c.product_id.in_([row.id for row in rows]))
                .order_by(t.product_variants.c.product_id, t.product_variants.c.position)
            )
        ).all()
        levels = await tx.levels([v.sku for v in variant_rows])
    variants: dict[str, list[Variant]] = {row.id: [] for row in rows}
    for v in variant_rows:
        variants[v.product_id].append(Variant(v.sku, json.loads(v.options_json), levels[v.sku]))
    return [
        Product(
            row.id,
            row.name,
            {k: tuple(vs) for k, vs in json.loads(row.options_json).items()},
            tuple(variants[row.id]),
        )
        for row in rows
    ]


async def list_standalone_stock(
    store: SqlStore, *, search: str | None = None, limit: int = 100
) -> list[StockLevel]:
    """SKUs that belong to no product (made by ``set_on_hand``), in code order."""
    assert 1 <= limit <= LIST_LIMIT_MAX
    search = filter_text(search, "search")
    query = (
        select(t.stock_levels)
        .where(t.stock_levels.c.sku.not_in(select(t.product_variants.c.sku)))
        .order_by(t.stock_levels.c.sku)
        .limit(limit)
    )
    if search:
        query = query.where(
            func.lower(t.stock_levels.c.sku).contains(search.lower(), autoescape=True)
        )
    async with store.transaction(read_only=True) as tx:
        rows = (await tx.connection.execute(query)).all()
    return [StockLevel(r.sku, r.on_hand, r.reserved, r.version) for r in rows]
