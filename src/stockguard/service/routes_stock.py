"""Stock levels: read (API), set, adjust, movements (admin) (docs/design.md#stock)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from stockguard.domain import ON_HAND_MAX, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, STOCK_QUERY_SKUS_MAX
from stockguard.service.deps import EngineDep, LocationPath, SkuPath
from stockguard.service.errors import STORE_KINDS, declared
from stockguard.service.models import (
    CURSOR_PATTERN,
    AdjustmentIn,
    LocationStockIn,
    MovementOut,
    MovementPage,
    PolicyIn,
    PolicyOut,
    Sku,
    StockOut,
    StockSetIn,
)

api_router = APIRouter(tags=["stock"])
admin_router = APIRouter(tags=["stock"])


@api_router.get(
    "/v1/stock/{sku}",
    responses=declared("unknown-sku", "invalid-input", *STORE_KINDS),
    summary="One SKU's stock",
)
async def stock_of(sku: SkuPath, engine: EngineDep) -> StockOut:
    return StockOut.of(await engine.stock_of(sku))


@api_router.get(
    "/v1/stock",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="Stock of the named SKUs (unknown ones are left out)",
)
async def stock_of_many(
    sku: Annotated[list[Sku], Query(min_length=1, max_length=STOCK_QUERY_SKUS_MAX)],
    engine: EngineDep,
) -> list[StockOut]:
    return [StockOut.of(level) for level in await engine.stock(sku)]


@admin_router.put(
    "/v1/stock/{sku}",
    responses=declared(
        "unknown-sku",
        "stock-changed",
        "below-reserved",
        "invalid-input",
        "body-too-large",
        *STORE_KINDS,
    ),
    summary="Set on_hand; with expected_on_hand only if it is still that (admin)",
)
async def set_on_hand(sku: SkuPath, body: StockSetIn, engine: EngineDep) -> StockOut:
    level = await engine.set_on_hand(sku, body.on_hand, body.expected_on_hand)
    return StockOut.of(level)


@admin_router.put(
    "/v1/stock/{sku}/locations/{code}",
    responses=declared(
        "unknown-location",
        "unknown-sku",
        "stock-changed",
        "below-reserved",
        "invalid-input",
        "body-too-large",
        *STORE_KINDS,
    ),
    summary="Set one location's on_hand of a SKU; with expected_on_hand only if it is still "
    "that (admin)",
    description="docs/locations.md#api. The compare-and-set of `PUT /v1/stock/{sku}` on the "
    "level at location `code` (created, and the SKU too, when absent and no "
    "`expected_on_hand` is given; 404 unknown-sku when one is), plus that location's "
    "`safety_stock` and `backorder_max` when given. 409 stock-changed when the level's "
    "on_hand is no longer `expected_on_hand`, 409 below-reserved below what it holds; "
    "`current` is then the SKU as it is now. Answers the SKU's stock: totals and every "
    "location.",
)
async def set_location_stock(
    sku: SkuPath, code: LocationPath, body: LocationStockIn, engine: EngineDep
) -> StockOut:
    level = await engine.set_location_stock(
        sku,
        code,
        body.on_hand,
        body.expected_on_hand,
        body.safety_stock,
        body.backorder_max,
    )
    return StockOut.of(level)


@admin_router.post(
    "/v1/stock/{sku}/adjustments",
    responses=declared(
        "unknown-sku", "below-reserved", "invalid-input", "body-too-large", *STORE_KINDS
    ),
    summary="Add or remove units, never below what is reserved (admin)",
    description="on_hand + delta must stay between reserved less the SKU's backorder_max "
    f"(409 below-reserved) and {ON_HAND_MAX} (422 invalid-input); below 0 is the units a "
    "backorder sold beyond the shelf, which a delivery covers first.",
)
async def adjust(sku: SkuPath, body: AdjustmentIn, engine: EngineDep) -> StockOut:
    return StockOut.of(await engine.adjust(sku, body.delta, body.reason))


@admin_router.get(
    "/v1/stock/{sku}/movements",
    responses=declared("unknown-sku", "invalid-input", *STORE_KINDS),
    summary="A SKU's ledger, newest first (admin)",
)
async def movements(
    sku: SkuPath,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = PAGE_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
) -> MovementPage:
    items, next_cursor = await engine.movements(sku, limit=limit, cursor=cursor)
    return MovementPage(items=[MovementOut.of(item) for item in items], next_cursor=next_cursor)


@admin_router.get(
    "/v1/stock/{sku}/policy",
    responses=declared("unknown-sku", "invalid-input", *STORE_KINDS),
    summary="A SKU's stock policy: safety stock, backorders, per-customer cap, low-stock "
    "threshold (admin)",
)
async def policy_of(sku: SkuPath, engine: EngineDep) -> PolicyOut:
    return PolicyOut.of(sku, await engine.get_policy(sku))


@admin_router.put(
    "/v1/stock/{sku}/policy",
    responses=declared(
        "unknown-sku",
        "policy-changed",
        "below-reserved",
        "invalid-input",
        "body-too-large",
        *STORE_KINDS,
    ),
    summary="Replace a SKU's stock policy; with expected only if it is still that (admin)",
    description="docs/design.md#stock-policy. Holds never take safety_stock units; a SKU "
    "with customer_max refuses a hold past it with 409 customer-limit and one without a "
    "customer_id with 422 invalid-input; holds may go backorder_max units beyond on_hand "
    "(docs/design.md#backorders), and cutting it below the units already held beyond "
    "on_hand is 409 below-reserved.",
)
async def set_policy(sku: SkuPath, body: PolicyIn, engine: EngineDep) -> PolicyOut:
    expected = None if body.expected is None else body.expected.policy()
    return PolicyOut.of(sku, await engine.set_policy(sku, body.policy(), expected))
