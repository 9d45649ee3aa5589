"""Kits: a SKU sold as a fixed set of component SKUs (docs/design.md#kits).

Reserving a kit needs nothing here: ``POST /v1/reservations`` takes a kit SKU like any
other and holds its components. These routes define kits (admin) and read them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from stockguard.domain import PAGE_LIMIT_MAX
from stockguard.service.deps import EngineDep, SkuPath
from stockguard.service.errors import STORE_KINDS, declared
from stockguard.service.models import KitIn, KitOut, KitPage, Sku

api_router = APIRouter(tags=["kits"])
admin_router = APIRouter(tags=["kits"])
KITS_PAGE_DEFAULT = 100


@api_router.get(
    "/v1/kits/{sku}",
    responses=declared("unknown-sku", "invalid-input", *STORE_KINDS),
    summary="A kit, and how many whole kits its components' stock makes now",
)
async def kit_of(sku: SkuPath, engine: EngineDep) -> KitOut:
    kit, available = await engine.kit(sku)
    return KitOut.of(kit, available)


@api_router.get(
    "/v1/kits",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="Kits in SKU order",
)
async def kits(
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = KITS_PAGE_DEFAULT,
    after: Annotated[Sku | None, Query()] = None,
) -> KitPage:
    found = await engine.list_kits(limit=limit, after=after)
    more = len(found) == limit
    return KitPage(
        items=[KitOut.of(kit) for kit in found], next_cursor=found[-1].sku if more else None
    )


@admin_router.put(
    "/v1/kits/{sku}",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": KitOut, "description": "The same definition again, answered as it is"},
        **declared("unknown-sku", "duplicate-sku", "invalid-input", "body-too-large", *STORE_KINDS),
    },
    summary="Define a kit once (admin); the same definition again answers 200",
    description="A kit's definition never changes: another definition for the SKU, or a "
    "SKU that has stock of its own, is refused with 409 duplicate-sku. Components must be "
    "SKUs with stock (so kits do not nest).",
)
async def define_kit(sku: SkuPath, body: KitIn, engine: EngineDep, response: Response) -> KitOut:
    kit, created = await engine.define_kit(sku, [(c.sku, c.quantity) for c in body.components])
    if not created:
        response.status_code = status.HTTP_200_OK
    _, available = await engine.kit(kit.sku)
    return KitOut.of(kit, available)
