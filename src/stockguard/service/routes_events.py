"""Stock events over HTTP (docs/events.md): the pull feed, webhook endpoints, dead letters
and the low-stock threshold. All admin: events name orders and customers.

Webhook state lives in SQL tables (migration 0005); on a memory store these routes answer
422 ``invalid-input`` naming the database, never 500.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from stockguard import domain
from stockguard.domain import PAGE_LIMIT_MAX
from stockguard.domain.events import EVENT_SCHEMA_VERSION, parse_event_types
from stockguard.events import state, webhooks
from stockguard.events.feed import WAIT_S_MAX, FeedWatch, last_id
from stockguard.events.state import DESCRIPTION_LEN_MAX, URL_LEN_MAX
from stockguard.service.deps import EngineDep, SkuPath
from stockguard.service.errors import STORE_KINDS, declared
from stockguard.service.models import OnHand, Timestamp, from_ms
from stockguard.stores.sql.store import SqlStore

api_router = APIRouter(tags=["events"])
"""Nothing here is for the API token."""
admin_router = APIRouter(tags=["events"])

EVENT_ID_MAX = 2**63 - 1
TYPES_LEN_MAX = 400
FEED_LIMIT_DEFAULT = 100
REDELIVER_TIMEOUT_S = 10.0
NOT_FOUND = "webhook-not-found"
TEXT_OR_EMPTY = f"^[^{domain.TEXT_FORBIDDEN}]*$"


def _store(engine: Any) -> SqlStore:
    store = engine.store
    if not isinstance(store, SqlStore):
        raise domain.InvalidInput("database", "webhooks need a SQL database, not memory://")
    return store


# ---------------------------------------------------------------------------- the feed


class EventOut(BaseModel):
    """One event's envelope (docs/events.md#envelope)."""

    id: int
    type: str
    schema_version: int = EVENT_SCHEMA_VERSION
    at_ms: int
    sku: str | None
    reservation_id: str | None
    data: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventOut]
    next_after: int
    """Pass as ``after`` to read on: the last id returned, or past every event examined."""
    last_id: int
    """The newest event id when the page was read (``after=last_id`` reads from now on)."""


def _types(text: str | None) -> frozenset[Any] | None:
    if text is None or not text.strip():
        return None
    try:
        chosen = parse_event_types(text)
    except domain.InvalidInput as error:
        raise domain.InvalidInput("types", error.reason) from None
    if not chosen:
        raise domain.InvalidInput("types", "names no event type")
    return chosen


def _watch(request: Request, engine: Any) -> FeedWatch:
    watch: FeedWatch | None = getattr(request.app.state, "feed_watch", None)
    if watch is None:
        watch = request.app.state.feed_watch = FeedWatch(engine)
    return watch


@admin_router.get(
    "/v1/events",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="Events after an id, oldest first; waits up to wait_s for one (admin)",
    description="The pull feed (docs/events.md#the-pull-feed). `types`: `all`, `stock`, "
    "`reservation.*` or comma-separated types. With nothing to return, the request waits "
    f"up to `wait_s` (at most {WAIT_S_MAX:g} s) for a new event.",
)
async def events_feed(
    request: Request,
    engine: EngineDep,
    after: Annotated[int, Query(ge=0, le=EVENT_ID_MAX)] = 0,
    types: Annotated[
        str | None,
        Query(
            max_length=TYPES_LEN_MAX,
            description="Known event types only (all, stock, reservation.*, or a "
            "comma-separated list of types); an unknown name is refused with 422.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = FEED_LIMIT_DEFAULT,
    wait_s: Annotated[float, Query(ge=0, le=WAIT_S_MAX)] = 0.0,
) -> EventPage:
    chosen = _types(types)
    deadline = time.monotonic() + wait_s
    while True:
        top = await last_id(engine)
        page = await engine.events_after(after, limit, chosen)
        remaining = deadline - time.monotonic()
        if page or remaining <= 0:
            break
        await _watch(request, engine).wait_past(max(after, top), remaining)
        if time.monotonic() >= deadline:
            top = await last_id(engine)
            page = await engine.events_after(after, limit, chosen)
            break
    next_after = page[-1].id if page else max(after, top)
    return EventPage(
        events=[EventOut(**event.envelope()) for event in page],
        next_after=next_after,
        last_id=max(top, next_after),
    )


# ---------------------------------------------------------------------------- webhooks


RULES = (
    "Rules the schema cannot state, refused with 422: the url must be an absolute http:// "
    "or https:// URL with a host and no spaces; a secret must be whsec_ followed by the "
    "base64 of 24-64 bytes; types must name known event types (all, stock, "
    "reservation.*, or a comma-separated list of types, docs/events.md), at least one."
)


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"description": RULES})

    url: str = Field(min_length=1, max_length=URL_LEN_MAX)
    secret: str | None = Field(default=None, max_length=128)
    """``whsec_`` + base64 of 24-64 bytes; unset: one is generated (shown once)."""
    types: str = Field(default="all", min_length=1, max_length=TYPES_LEN_MAX)
    active: bool = True
    description: str = Field(default="", max_length=DESCRIPTION_LEN_MAX, pattern=TEXT_OR_EMPTY)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"description": RULES})

    url: str | None = Field(default=None, min_length=1, max_length=URL_LEN_MAX)
    types: str | None = Field(default=None, min_length=1, max_length=TYPES_LEN_MAX)
    active: bool | None = None
    description: str | None = Field(
        default=None, max_length=DESCRIPTION_LEN_MAX, pattern=TEXT_OR_EMPTY
    )


class CursorOut(BaseModel):
    last_event_id: int
    attempts: int
    next_attempt_at: Timestamp | None
    last_error: str | None


class WebhookOut(BaseModel):
    id: str
    url: str
    types: str
    active: bool
    description: str
    created_at: Timestamp
    delivery: CursorOut | None = None

    @classmethod
    def of(cls, endpoint: state.Endpoint, cursor: state.Cursor | None = None) -> WebhookOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            types=endpoint.types,
            active=endpoint.active,
            description=endpoint.description,
            created_at=from_ms(endpoint.created_at_ms),
            delivery=None
            if cursor is None
            else CursorOut(
                last_event_id=cursor.last_seq,
                attempts=cursor.attempts,
                next_attempt_at=None
                if cursor.next_attempt_at_ms is None
                else from_ms(cursor.next_attempt_at_ms),
                last_error=cursor.last_error,
            ),
        )


class WebhookCreated(WebhookOut):
    secret: str
    """The signing secret: shown here once, never again."""


class WebhookList(BaseModel):
    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    endpoint_id: str
    event_id: int
    attempt: int
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: int
    at: Timestamp

    @classmethod
    def of(cls, d: state.Delivery) -> DeliveryOut:
        return cls(
            endpoint_id=d.endpoint_id,
            event_id=d.event_id,
            attempt=d.attempt,
            outcome=d.outcome,
            status_code=d.status_code,
            error=d.error,
            duration_ms=d.duration_ms,
            at=from_ms(d.at_ms),
        )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class DeadLetterOut(BaseModel):
    endpoint_id: str
    event_id: int
    type: str
    attempts: int
    last_error: str | None
    dead_at: Timestamp

    @classmethod
    def of(cls, x: state.DeadLetter) -> DeadLetterOut:
        return cls(
            endpoint_id=x.endpoint_id,
            event_id=x.event_id,
            type=x.type,
            attempts=x.attempts,
            last_error=x.last_error,
            dead_at=from_ms(x.dead_at_ms),
        )


class DeadLetterList(BaseModel):
    items: list[DeadLetterOut]


class RedeliveryOut(BaseModel):
    delivered: bool
    status_code: int | None
    error: str | None


async def _with_delivery(store: SqlStore, endpoints: list[state.Endpoint]) -> list[WebhookOut]:
    """Endpoints as every webhook route answers them: with their delivery position."""
    cursors = await state.cursors(store)
    return [WebhookOut.of(e, cursors.get(state.webhook_sink(e.id))) for e in endpoints]


EndpointPath = Annotated[
    str, Path(min_length=1, max_length=36, pattern=r"^[0-9a-f-]+$", description="endpoint id")
]
EventIdPath = Annotated[int, Path(ge=1, le=EVENT_ID_MAX, description="event id")]
_WRITE_KINDS = ("invalid-input", "body-too-large", *STORE_KINDS)


@admin_router.post(
    "/v1/webhooks",
    status_code=201,
    responses=declared(*_WRITE_KINDS),
    summary="Register a webhook endpoint; the answer shows its secret once (admin)",
)
async def create_webhook(body: WebhookIn, engine: EngineDep) -> WebhookCreated:
    endpoint = await state.create_endpoint(
        _store(engine), body.url, body.secret, body.types, body.active, body.description
    )
    return WebhookCreated(**WebhookOut.of(endpoint).model_dump(), secret=endpoint.secret)


@admin_router.get(
    "/v1/webhooks",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="Every webhook endpoint with its delivery position (admin)",
)
async def list_webhooks(engine: EngineDep) -> WebhookList:
    store = _store(engine)
    return WebhookList(items=await _with_delivery(store, await state.list_endpoints(store)))


@admin_router.get(
    "/v1/webhooks/dead-letters",
    responses=declared("invalid-input", *STORE_KINDS),
    summary="Events an endpoint refused too many times, newest first (admin)",
)
async def list_dead_letters(
    engine: EngineDep,
    endpoint_id: Annotated[str | None, Query(max_length=36, pattern=r"^[0-9a-f-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 50,
) -> DeadLetterList:
    found = await state.dead_letters(_store(engine), endpoint_id, limit)
    return DeadLetterList(items=[DeadLetterOut.of(x) for x in found])


@admin_router.get(
    "/v1/webhooks/{endpoint_id}",
    responses=declared(NOT_FOUND, "invalid-input", *STORE_KINDS),
    summary="One webhook endpoint with its delivery position (admin)",
)
async def get_webhook(endpoint_id: EndpointPath, engine: EngineDep) -> WebhookOut:
    store = _store(engine)
    [found] = await _with_delivery(store, [await state.get_endpoint(store, endpoint_id)])
    return found


@admin_router.patch(
    "/v1/webhooks/{endpoint_id}",
    responses=declared(NOT_FOUND, *_WRITE_KINDS),
    summary="Change an endpoint's URL, types, active flag or description (admin)",
)
async def update_webhook(
    endpoint_id: EndpointPath, body: WebhookPatch, engine: EngineDep
) -> WebhookOut:
    store = _store(engine)
    endpoint = await state.update_endpoint(
        store,
        endpoint_id,
        url=body.url,
        types=body.types,
        active=body.active,
        description=body.description,
    )
    [found] = await _with_delivery(store, [endpoint])
    return found


@admin_router.delete(
    "/v1/webhooks/{endpoint_id}",
    status_code=204,
    responses=declared(NOT_FOUND, "invalid-input", *STORE_KINDS),
    summary="Remove an endpoint with its deliveries and dead letters (admin)",
)
async def delete_webhook(endpoint_id: EndpointPath, engine: EngineDep) -> Response:
    await state.delete_endpoint(_store(engine), endpoint_id)
    return Response(status_code=204)


@admin_router.get(
    "/v1/webhooks/{endpoint_id}/deliveries",
    responses=declared(NOT_FOUND, "invalid-input", *STORE_KINDS),
    summary="An endpoint's recent delivery attempts, newest first (admin)",
)
async def webhook_deliveries(
    endpoint_id: EndpointPath,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 50,
) -> DeliveryList:
    store = _store(engine)
    endpoint = await state.get_endpoint(store, endpoint_id)
    found = await state.recent_deliveries(store, endpoint.id, limit)
    return DeliveryList(items=[DeliveryOut.of(d) for d in found])


@admin_router.post(
    "/v1/webhooks/{endpoint_id}/dead-letters/{event_id}/redeliver",
    responses=declared(NOT_FOUND, "invalid-input", *STORE_KINDS),
    summary="Send a dead letter again now; delivered, it leaves the list (admin)",
)
async def redeliver(
    endpoint_id: EndpointPath, event_id: EventIdPath, engine: EngineDep
) -> RedeliveryOut:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        ok, attempt = await webhooks.redeliver(
            _store(engine), client, endpoint_id, event_id, REDELIVER_TIMEOUT_S
        )
    return RedeliveryOut(delivered=ok, status_code=attempt.status_code, error=attempt.error)


# ---------------------------------------------------------------------------- low stock


class ThresholdIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    threshold: OnHand | None
    """``stock.low`` fires when available falls to this or below; null turns it off."""


class ThresholdOut(BaseModel):
    sku: str
    threshold: int | None


@admin_router.get(
    "/v1/stock/{sku}/low-stock-threshold",
    responses=declared("unknown-sku", "invalid-input", *STORE_KINDS),
    summary="A SKU's low-stock threshold (null: no stock.low events) (admin)",
)
async def get_threshold(sku: SkuPath, engine: EngineDep) -> ThresholdOut:
    return ThresholdOut(sku=sku, threshold=await engine.low_stock_threshold(sku))


@admin_router.put(
    "/v1/stock/{sku}/low-stock-threshold",
    responses=declared("unknown-sku", "invalid-input", "body-too-large", *STORE_KINDS),
    summary="Set a SKU's low-stock threshold (admin)",
)
async def set_threshold(sku: SkuPath, body: ThresholdIn, engine: EngineDep) -> ThresholdOut:
    await engine.set_low_stock_threshold(sku, body.threshold)
    return ThresholdOut(sku=sku, threshold=body.threshold)
