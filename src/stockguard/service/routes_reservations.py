"""Reservations: hold, read, list, confirm, release (docs/design.md#reservations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi import status as http_status

from stockguard.domain import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, Line, Status
from stockguard.service.deps import EngineDep, IdPath, note_order
from stockguard.service.errors import STORE_KINDS, declared
from stockguard.service.models import (
    CURSOR_PATTERN,
    CustomerId,
    ExtendIn,
    OrderId,
    ReleaseIn,
    ReservationOut,
    ReservationPage,
    ReserveIn,
    Sku,
)

api_router = APIRouter(tags=["reservations"])
"""Routes behind the API token (when one is configured)."""
admin_router = APIRouter(tags=["reservations"])
"""Routes behind the admin token."""


@api_router.post(
    "/v1/reservations",
    status_code=http_status.HTTP_201_CREATED,
    responses={
        200: {"model": ReservationOut, "description": "Replay of an identical earlier request"},
        **declared(
            "unknown-sku",
            "out-of-stock",
            "idempotency-conflict",
            "invalid-input",
            "body-too-large",
            *STORE_KINDS,
        ),
    },
    summary="Hold every item or none",
    description="Each SKU may appear in only one item; a repeated SKU is refused with 422 "
    "invalid-input. The same order_id with the same items replays the original hold (200); "
    "with other items it is 409 idempotency-conflict. For a SKU stocked at several "
    "locations, `allocation_policy`, `split` and an item's `location` choose where its "
    "units are drawn from (docs/locations.md#allocation-policy); each item of the answer "
    "tells its `allocations`.",
)
async def reserve(
    body: ReserveIn, engine: EngineDep, request: Request, response: Response
) -> ReservationOut:
    note_order(request, body.order_id)
    lines: list[tuple[str, int]] | list[Line] = [(item.sku, item.quantity) for item in body.items]
    if any(item.location is not None for item in body.items):
        lines = [Line(item.sku, item.quantity, 0, item.location) for item in body.items]
    outcome = await engine.reserve(
        body.order_id,
        lines,
        body.ttl_seconds,
        body.customer_id,
        body.allocation_policy,
        body.split,
    )
    if not outcome.created:
        response.status_code = http_status.HTTP_200_OK
    return ReservationOut.of(outcome.reservation)


@api_router.get(
    "/v1/reservations/{reservation_id}",
    responses=declared("reservation-not-found", "invalid-input", *STORE_KINDS),
    summary="One reservation",
)
async def get_reservation(
    reservation_id: IdPath, engine: EngineDep, request: Request
) -> ReservationOut:
    found = await engine.get_reservation(reservation_id)
    note_order(request, found.order_id)
    return ReservationOut.of(found)


@api_router.post(
    "/v1/reservations/{reservation_id}/confirm",
    responses=declared(
        "reservation-not-found",
        "reservation-expired",
        "invalid-state",
        "invalid-input",
        *STORE_KINDS,
    ),
    summary="Paid: the held units leave stock (replay-safe)",
)
async def confirm(reservation_id: IdPath, engine: EngineDep, request: Request) -> ReservationOut:
    confirmed = await engine.confirm(reservation_id)
    note_order(request, confirmed.order_id)
    return ReservationOut.of(confirmed)


@api_router.post(
    "/v1/reservations/{reservation_id}/release",
    responses=declared(
        "reservation-not-found", "invalid-state", "invalid-input", "body-too-large", *STORE_KINDS
    ),
    summary="Not paid: the held units become available again (replay-safe)",
    description="Without a body: a full release, replay-safe (a released or expired hold "
    "is answered as it is). With a body, only the `items` given back are released and the "
    "rest stays held with its expiry (a line reaching 0 leaves the reservation; giving back "
    "every unit left releases it). A SKU the reservation does not hold, or more units than "
    "it holds, is 422 invalid-input and nothing changes. A partial release is NOT "
    "replay-safe: each one gives back again; when unsure, read the reservation first.",
)
async def release(
    reservation_id: IdPath,
    engine: EngineDep,
    request: Request,
    body: Annotated[ReleaseIn | None, Body()] = None,
) -> ReservationOut:
    items = None if body is None else [(item.sku, item.quantity) for item in body.items]
    released = await engine.release(reservation_id, items)
    note_order(request, released.order_id)
    return ReservationOut.of(released)


@api_router.post(
    "/v1/reservations/{reservation_id}/extend",
    responses=declared(
        "reservation-not-found",
        "reservation-expired",
        "invalid-state",
        "invalid-input",
        "body-too-large",
        *STORE_KINDS,
    ),
    summary="More time for a held reservation",
    description="The hold then expires `ttl_seconds` from now by the store's clock; never "
    "earlier than it already did, and never more than 24 h after it was created (clamped: "
    "the answer's `expires_at` says how long it got). Only while held and not yet expired: "
    "past its expiry it ends as expired and the answer is 410 reservation-expired; a "
    "confirmed or released hold is 409 invalid-state. Repeating it is harmless.",
)
async def extend(
    reservation_id: IdPath, body: ExtendIn, engine: EngineDep, request: Request
) -> ReservationOut:
    extended = await engine.extend(reservation_id, body.ttl_seconds)
    note_order(request, extended.order_id)
    return ReservationOut.of(extended)


@admin_router.get(
    "/v1/reservations",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="Reservations, newest first (admin)",
)
async def list_reservations(
    engine: EngineDep,
    status: Status | None = None,
    sku: Annotated[Sku | None, Query()] = None,
    order_id: Annotated[OrderId | None, Query()] = None,
    customer_id: Annotated[CustomerId | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = PAGE_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
) -> ReservationPage:
    items, next_cursor = await engine.list_reservations(
        status=status,
        sku=sku,
        order_id=order_id,
        customer_id=customer_id,
        limit=limit,
        cursor=cursor,
    )
    return ReservationPage(
        items=[ReservationOut.of(item) for item in items], next_cursor=next_cursor
    )
