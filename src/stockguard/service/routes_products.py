"""Products with size × colour (…) options, one SKU per variant (docs/design.md#products)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import status as http_status

from stockguard.domain import (
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    SKU_LEN_MAX,
    VARIANTS_MAX,
    VariantSpec,
)
from stockguard.service.deps import EngineDep, IdPath
from stockguard.service.errors import STORE_KINDS, declared
from stockguard.service.models import (
    ProductCursor,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductSearch,
)

api_router = APIRouter(tags=["products"])
admin_router = APIRouter(tags=["products"])


@admin_router.post(
    "/v1/products",
    status_code=http_status.HTTP_201_CREATED,
    responses=declared("duplicate-sku", "invalid-input", "body-too-large", *STORE_KINDS),
    summary="A product and its variants' stock; options alone make every combination (admin)",
    description=f"With options alone, every combination of values becomes a variant: at most "
    f"{VARIANTS_MAX}, each generated SKU (PREFIX-VALUE-…) at most {SKU_LEN_MAX} characters. "
    "Explicit variants must each name exactly the product's axes with listed values, with "
    "no shared SKU or option values. Otherwise 422 invalid-input.",
)
async def create_product(body: ProductIn, engine: EngineDep) -> ProductOut:
    product = await engine.create_product(
        body.name,
        options=body.options,
        variants=(
            None
            if body.variants is None
            else [VariantSpec(v.sku, v.options, v.on_hand) for v in body.variants]
        ),
        initial_on_hand=body.initial_on_hand,
    )
    return ProductOut.of(product)


@api_router.get(
    "/v1/products/{product_id}",
    responses=declared("product-not-found", "invalid-input", *STORE_KINDS),
    summary="A product with live stock per variant",
)
async def get_product(product_id: IdPath, engine: EngineDep) -> ProductOut:
    return ProductOut.of(await engine.get_product(product_id))


@api_router.get(
    "/v1/products",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="Products by name, with live stock per variant; search by name or SKU",
    description="The first `limit` products by name (then id) whose name or one of whose "
    "SKUs contains `search`, in any case. A full page carries `next_cursor`: send it back "
    "as `cursor` for the products that follow.",
)
async def list_products(
    engine: EngineDep,
    search: Annotated[ProductSearch | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = PAGE_LIMIT_DEFAULT,
    cursor: Annotated[
        ProductCursor | None,
        Query(
            description="The `next_cursor` of the previous page (a product id); a cursor "
            "that names no product is refused with 422."
        ),
    ] = None,
) -> ProductPage:
    products = await engine.list_products(search=search, limit=limit, after=cursor)
    return ProductPage(
        items=[ProductOut.of(product) for product in products],
        next_cursor=products[-1].id if len(products) == limit else None,
    )
