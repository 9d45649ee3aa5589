"""Products with size × colour (…) options, one SKU per variant (docs/design.md#products)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi import status as http_status

from stockguard.domain import SKU_LEN_MAX, VARIANTS_MAX, VariantSpec
from stockguard.service.deps import EngineDep, IdPath
from stockguard.service.errors import STORE_KINDS, declared
from stockguard.service.models import ProductIn, ProductOut

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
