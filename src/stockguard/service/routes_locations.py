"""Locations: list (API), create and change (admin) (docs/locations.md#api).

A location's stock of a SKU is set under the SKU's stock routes
(``PUT /v1/stock/{sku}/locations/{code}``, ``routes_stock.py``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi import status as http_status

from stockguard.service.deps import EngineDep, LocationPath
from stockguard.service.errors import STORE_KINDS, declared
from stockguard.service.models import (
    LocationIn,
    LocationOut,
    LocationPatchIn,
)

api_router = APIRouter(tags=["locations"])
admin_router = APIRouter(tags=["locations"])


@api_router.get(
    "/v1/locations",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="Every location, by priority then code (`default` included)",
)
async def list_locations(engine: EngineDep) -> list[LocationOut]:
    return [LocationOut.of(location) for location in await engine.list_locations()]


@admin_router.post(
    "/v1/locations",
    status_code=http_status.HTTP_201_CREATED,
    responses=declared("duplicate-location", "invalid-input", "body-too-large", *STORE_KINDS),
    summary="Create a location (admin)",
    description="A code already taken is 409 duplicate-location; a shop has at most 100 "
    "locations (422 invalid-input). A new location stocks nothing until a SKU's stock is "
    "set there (`PUT /v1/stock/{sku}/locations/{code}`).",
)
async def create_location(body: LocationIn, engine: EngineDep) -> LocationOut:
    created = await engine.create_location(body.code, body.name, body.priority, body.active)
    return LocationOut.of(created)


@admin_router.patch(
    "/v1/locations/{code}",
    responses=declared("unknown-location", "invalid-input", "body-too-large", *STORE_KINDS),
    summary="Rename, reprioritise, deactivate or reactivate a location (admin)",
    description="Only the fields given change. `active: false` stops the location selling "
    "at once (its stock leaves the SKUs' totals, a line pinned to it is refused) and keeps "
    "its holds, which confirm, release and expire as before; the default location cannot "
    "be deactivated (422 invalid-input). A location is never deleted "
    "(docs/locations.md#deactivating).",
)
async def update_location(
    code: LocationPath, body: LocationPatchIn, engine: EngineDep
) -> LocationOut:
    changed = await engine.update_location(
        code, name=body.name, priority=body.priority, active=body.active
    )
    return LocationOut.of(changed)
