"""Kit definitions on SQL (docs/design.md#kits): written once, read by SKU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import insert, select

from stockguard import domain
from stockguard.domain import Line
from stockguard.domain.kits import Kit
from stockguard.stores.contract import DuplicateKey
from stockguard.stores.sql import schema as t

if TYPE_CHECKING:
    from stockguard.stores.sql.store import SqlStore
    from stockguard.stores.sql.tx import Tx

_c = t.kit_components.c


async def define_kit(store: SqlStore, kit: Kit) -> tuple[Kit, bool]:
    """Writes ``kit``; the same definition again is a no-op (a PUT replayed), another one
    for the same SKU is refused, as is a kit SKU that has stock of its own. Components
    must be SKUs with stock (which also keeps kits from nesting: a kit has no stock row).
    Returns the kit and whether this call created it."""

    async def work() -> tuple[Kit, bool]:
        async with store.transaction() as tx:
            existing = (await read_kits(tx, [kit.sku])).get(kit.sku)
            if existing is not None:
                if existing != kit:
                    raise domain.DuplicateSku([kit.sku])
                return existing, False
            if await tx.existing_skus([kit.sku]):
                raise domain.DuplicateSku([kit.sku])
            components = [c.sku for c in kit.components]
            missing = set(components) - await tx.existing_skus(components)
            if missing:
                raise domain.UnknownSku(sorted(missing))
            now_ms = await tx.now_ms()
            await tx.connection.execute(
                insert(t.kit_components),
                [
                    {
                        "kit_sku": kit.sku,
                        "component_sku": c.sku,
                        "quantity": c.quantity,
                        "created_at_ms": now_ms,
                    }
                    for c in kit.components
                ],
            )
            await tx.commit()
            return kit, True

    try:
        return await store.run(work)
    except DuplicateKey:  # the same kit defined concurrently: answer as a replay
        async with store.transaction(read_only=True) as tx:
            found = (await read_kits(tx, [kit.sku])).get(kit.sku)
        if found != kit:
            raise domain.DuplicateSku([kit.sku]) from None
        return kit, False


async def read_kits(tx: Tx, skus: Sequence[str]) -> dict[str, Kit]:
    """The kits among ``skus``."""
    parts: dict[str, list[Line]] = {}
    for row in await tx.connection.execute(
        select(_c.kit_sku, _c.component_sku, _c.quantity)
        .where(_c.kit_sku.in_(sorted(set(skus))))
        .order_by(_c.kit_sku, _c.component_sku)
    ):
        parts.setdefault(row.kit_sku, []).append(Line(row.component_sku, int(row.quantity)))
    return {sku: Kit(sku, tuple(lines)) for sku, lines in parts.items()}


async def kits(store: SqlStore, skus: Sequence[str]) -> dict[str, Kit]:
    async with store.transaction(read_only=True) as tx:
        return await read_kits(tx, skus)


async def list_kits(store: SqlStore, limit: int, after: str | None) -> list[Kit]:
    """Kits in SKU order, ``limit`` of them after the SKU ``after``."""
    query = select(_c.kit_sku).distinct().order_by(_c.kit_sku).limit(limit)
    if after is not None:
        query = query.where(_c.kit_sku > after)
    async with store.transaction(read_only=True) as tx:
        skus = list((await tx.connection.execute(query)).scalars())
        found = await read_kits(tx, skus)
    return [found[sku] for sku in skus]
