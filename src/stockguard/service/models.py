"""Request and response bodies of the HTTP API (docs/design.md#api), with its limits.

Request models are strict (a JSON ``"5"`` or ``true`` is not a quantity) and forbid
unknown fields; every limit is declared here so that the OpenAPI document states it,
and checked again by the domain, which stays the one authority. Response models are
built from domain values with ``of``; times leave as RFC 3339 UTC with milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from stockguard import domain
from stockguard.domain import (
    CURSOR_DIGITS_MAX,
    CUSTOMER_ID_LEN_MAX,
    LINES_MAX,
    ON_HAND_MAX,
    OPTION_AXES_MAX,
    OPTION_TEXT_LEN_MAX,
    OPTION_VALUES_MAX,
    ORDER_ID_LEN_MAX,
    PRODUCT_NAME_LEN_MAX,
    QUANTITY_MAX,
    REASON_LEN_MAX,
    SKU_LEN_MAX,
    TTL_S_DEFAULT,
    TTL_S_MAX,
    TTL_S_MIN,
    VARIANTS_MAX,
    Status,
)
from stockguard.domain.kits import KIT_COMPONENTS_MAX, Kit
from stockguard.domain.locations import (
    LOCATION_CODE_LEN_MAX,
    LOCATION_NAME_LEN_MAX,
    LOCATION_PRIORITY_MAX,
    Location,
    LocationLevel,
)

CURSOR_PATTERN = f"^[0-9]{{1,{CURSOR_DIGITS_MAX}}}$"
"""The form of the page cursors this service hands out (opaque to clients, who only
send back what they were given; declared so that a malformed one is refused up front).
At most 18 digits: every such number fits the signed 64-bit row numbers they stand for."""

NO_CONTROL_CHARS = f"^[^{domain.TEXT_FORBIDDEN}]+$"
"""Text the API accepts: no control characters (NUL, C1) nor bidi overrides, as the
domain demands."""


def _text(length_max: int) -> object:
    return StringConstraints(min_length=1, max_length=length_max, pattern=NO_CONTROL_CHARS)


Sku = Annotated[str, _text(SKU_LEN_MAX)]
LocationCode = Annotated[str, _text(LOCATION_CODE_LEN_MAX)]
LocationName = Annotated[str, _text(LOCATION_NAME_LEN_MAX)]
AllocationPolicyName = Literal["priority", "most_available"]
"""``domain.locations.AllocationPolicy``'s names (docs/locations.md#allocation-policy)."""
OrderId = Annotated[str, _text(ORDER_ID_LEN_MAX)]
CustomerId = Annotated[str, _text(CUSTOMER_ID_LEN_MAX)]
ProductCursor = Annotated[str, _text(domain.ID_LEN_MAX)]
"""The ``next_cursor`` a product page handed out: the last product's id."""
OptionText = Annotated[str, _text(OPTION_TEXT_LEN_MAX)]
ProductSearch = Annotated[str, _text(PRODUCT_NAME_LEN_MAX)]
"""Part of a product's name or of one of its SKUs (a SKU is never longer than a name)."""


def _integral(value: object) -> object:
    """JSON has one number type and JSON Schema calls 3.0 an integer: accept it as 3.
    Strings, booleans and fractions still fail the strict check that follows."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


INTEGRAL = BeforeValidator(_integral)
# Bounds before INTEGRAL, so that they stay ``minimum``/``maximum`` in the JSON schema.
OnHand = Annotated[int, Field(ge=0, le=ON_HAND_MAX), INTEGRAL]
Quantity = Annotated[int, Field(ge=1, le=QUANTITY_MAX), INTEGRAL]
TtlSeconds = Annotated[int, Field(ge=TTL_S_MIN, le=TTL_S_MAX), INTEGRAL]
Delta = Annotated[int, Field(ge=-ON_HAND_MAX, le=ON_HAND_MAX), INTEGRAL]
Priority = Annotated[int, Field(ge=0, le=LOCATION_PRIORITY_MAX), INTEGRAL]


def _text_schema(length_max: int) -> dict[str, object]:
    return {"type": "string", "minLength": 1, "maxLength": length_max, "pattern": NO_CONTROL_CHARS}


def _mapping_schema(values: dict[str, object], keys_max: int) -> WithJsonSchema:
    """An object schema that constrains keys with ``propertyNames`` (pydantic would put a
    key pattern in ``patternProperties``, which leaves other keys' values unconstrained)."""
    return WithJsonSchema(
        {
            "type": "object",
            "propertyNames": _text_schema(OPTION_TEXT_LEN_MAX),
            "additionalProperties": values,
            "maxProperties": keys_max,
        }
    )


OptionValues = Annotated[list[OptionText], Field(min_length=1, max_length=OPTION_VALUES_MAX)]
OptionAxes = Annotated[
    dict[OptionText, OptionValues],
    Field(max_length=OPTION_AXES_MAX),
    _mapping_schema(
        {
            "type": "array",
            "items": _text_schema(OPTION_TEXT_LEN_MAX),
            "minItems": 1,
            "maxItems": OPTION_VALUES_MAX,
            "uniqueItems": True,
        },
        OPTION_AXES_MAX,
    ),
]
"""``{"size": ["S", "M"], "colour": ["red"]}``"""
OptionChoice = Annotated[
    dict[OptionText, OptionText],
    Field(max_length=OPTION_AXES_MAX),
    _mapping_schema(_text_schema(OPTION_TEXT_LEN_MAX), OPTION_AXES_MAX),
]
"""One variant's value per axis: ``{"size": "S", "colour": "red"}``"""


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[
    datetime,
    PlainSerializer(_rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def from_ms(epoch_ms: int) -> datetime:
    seconds, millis = divmod(epoch_ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---------------------------------------------------------------------------- requests


class ReserveItemIn(_Request):
    sku: Sku
    quantity: Quantity


class ReserveLineIn(ReserveItemIn):
    """An item of a hold: a SKU, its quantity, and optionally the one location it may
    draw from."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True
    )

    location: LocationCode | None = None
    """The only location this item may draw from (click-and-collect;
    docs/locations.md#allocation-policy); null: any active one. A code that is no
    location is 422 invalid-input; an inactive or empty one is refused as out of stock."""


class ReserveIn(_Request):
    """Each SKU appears in at most one item (give one item its total quantity): a SKU
    named twice is refused with 422 invalid-input (JSON Schema cannot require items to be
    unique by one of their members). An item's `location` that names no location is
    refused with 422 invalid-input (the locations are the shop's, not the schema's)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True
    )

    order_id: OrderId
    items: Annotated[list[ReserveLineIn], Field(min_length=1, max_length=LINES_MAX)]
    ttl_seconds: TtlSeconds = TTL_S_DEFAULT
    customer_id: CustomerId | None = None
    allocation_policy: AllocationPolicyName | None = None
    """Where a SKU stocked at several locations draws from: ``priority`` (the lowest
    priority number first) or ``most_available``; null: the shop's
    (``STOCKGUARD_ALLOCATION_POLICY``). docs/locations.md#allocation-policy"""
    split: bool = True
    """false: each item from one location alone (refused when no one location can
    fill it, even if several together could)."""


class ExtendIn(_Request):
    """More time for a held reservation: it then expires ``ttl_seconds`` from now (the
    store's clock), never earlier than it already did, and never later than 24 h after it
    was created (clamped there: read the answer's ``expires_at``)."""

    ttl_seconds: TtlSeconds


class ReleaseIn(_Request):
    """Units to give back; the rest stays held. Each SKU at most once, each one the
    reservation holds, at most the quantity it holds (else 422 and nothing changes)."""

    items: Annotated[list[ReserveItemIn], Field(min_length=1, max_length=LINES_MAX)]


class StockSetIn(_Request):
    on_hand: OnHand
    expected_on_hand: OnHand | None = None


class LocationIn(_Request):
    """A new location (docs/locations.md#model). A code already taken is 409
    duplicate-location; a shop has at most 100 locations (422 invalid-input)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True
    )

    code: LocationCode
    """The key: a SKU's character rules; never changes."""
    name: LocationName
    priority: Priority = 0
    """Sort order: 0 is drawn from first under the ``priority`` policy."""
    active: bool = True
    """false: the location sells nothing (its stock leaves the totals) but keeps its holds."""


class LocationPatchIn(_Request):
    """The fields to change; omitted (or null) fields stay as they are. The default
    location cannot be deactivated (422 invalid-input)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True
    )

    name: LocationName | None = None
    priority: Priority | None = None
    active: bool | None = None
    """false stops the location selling at once and keeps its holds; true puts its stock
    back in the sale (docs/locations.md#deactivating)."""


class LocationStockIn(_Request):
    """One location's stock of a SKU: ``on_hand`` with the compare-and-set of ``PUT
    /v1/stock/{sku}`` on that level (the level, and the SKU, are created when absent and
    not expected), and that location's ``safety_stock`` and ``backorder_max`` when given
    (docs/locations.md#policy-per-location)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True
    )

    on_hand: OnHand
    expected_on_hand: OnHand | None = None
    """The level's on_hand as last read; a different one is 409 stock-changed."""
    safety_stock: OnHand | None = None
    """Units of this location never held; null: unchanged (0 for a new level)."""
    backorder_max: OnHand | None = None
    """Units this location may hold beyond its on_hand; null: unchanged (0 for a new
    level). Cutting it below what is already held beyond on_hand is 409 below-reserved."""


class PolicyFields(BaseModel):
    """A SKU's stock policy (docs/design.md#stock-policy); each field's default is "none"."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)

    safety_stock: OnHand = 0
    """Units never held: ``available`` is on_hand + backorder_max - reserved -
    safety_stock."""
    backorder_max: OnHand = 0
    """Units that may be held beyond on_hand (backorders, on purpose and bounded): holds
    may take ``reserved`` up to on_hand + backorder_max, a hold's items tell how many of
    their units are ``backordered``, and confirming them takes on_hand below 0 (restocking
    covers that first). Cutting it below the units already held beyond on_hand is 409
    below-reserved."""
    customer_max: Annotated[int, Field(ge=0, le=QUANTITY_MAX), INTEGRAL] | None = None
    """Units one customer_id may hold and have bought of this SKU; null: no cap. A hold
    of a capped SKU must name its customer_id (422 otherwise) and is refused with 409
    customer-limit past the cap."""
    low_stock_threshold: OnHand | None = None
    """``stock.low`` fires when available falls to or below it; null: off."""

    def policy(self) -> domain.Policy:
        return domain.Policy(
            self.safety_stock, self.backorder_max, self.customer_max, self.low_stock_threshold
        )


class PolicyIn(PolicyFields):
    """The whole policy, replaced at once (omitted fields take their defaults). With
    ``expected`` (the policy as GET showed it) the write applies only if the stored policy
    is still that one, else 409 policy-changed with the policy as it is now."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True
    )

    expected: PolicyFields | None = None
    """The policy as GET showed it (without ``sku``); null: write unconditionally."""


class PolicyOut(PolicyFields):
    sku: str

    @classmethod
    def of(cls, sku: str, policy: domain.Policy) -> PolicyOut:
        return cls(
            sku=sku,
            safety_stock=policy.safety_stock,
            backorder_max=policy.backorder_max,
            customer_max=policy.customer_max,
            low_stock_threshold=policy.low_stock_threshold,
        )


class AdjustmentIn(_Request):
    """The stock after the change must stay within what the schema allows ``on_hand``
    (0 to 1000000000000): a delta that would push it past the maximum is refused with 422
    invalid-input, one that would take it below the units reserved with 409
    below-reserved. Both depend on the stock at that moment, which the schema cannot."""

    delta: Annotated[Delta, Field(json_schema_extra={"not": {"const": 0}})]
    """Units added (negative: removed); never zero (the domain refuses it)."""
    reason: Annotated[str, _text(REASON_LEN_MAX)]


class VariantIn(_Request):
    """One variant: ``options`` names every axis of the product's ``options`` exactly
    once, each with one of that axis's listed values (422 invalid-input otherwise)."""

    sku: Sku
    options: OptionChoice
    on_hand: OnHand


class ProductIn(_Request):
    """A product and its variants. Rules the schema cannot state, refused with 422
    invalid-input: with ``options`` alone, every combination of values becomes a variant
    named ``PREFIX-VALUE-…`` (prefix: the name), so the product of the axes' value counts
    is at most 1000 and each generated SKU fits its length; with ``variants``,
    each names exactly the product's axes with listed values (``{}`` without options),
    and no two variants share a SKU or the same option values."""

    name: Annotated[str, _text(PRODUCT_NAME_LEN_MAX)]
    options: OptionAxes | None = None
    variants: Annotated[list[VariantIn], Field(min_length=1, max_length=VARIANTS_MAX)] | None = None
    initial_on_hand: OnHand | None = None


class KitIn(_Request):
    """A kit's components: SKUs with stock, each named once (422 invalid-input for a SKU
    named twice or the kit itself; 404 unknown-sku for a component without stock)."""

    components: Annotated[list[ReserveItemIn], Field(min_length=1, max_length=KIT_COMPONENTS_MAX)]


# ---------------------------------------------------------------------------- responses


class AllocationOut(BaseModel):
    """Units of an item drawn from one location (docs/locations.md#model)."""

    location: str
    quantity: int
    backordered: int


class ItemOut(BaseModel):
    sku: str
    quantity: int
    backordered: int = Field(
        0,
        description="Units of `quantity` held beyond the physical stock, on the SKU's"
        " backorder allowance (policy `backorder_max`); 0 when the shelf covers the line.",
    )
    allocations: list[AllocationOut] = Field(
        default_factory=list,
        description="Where the units are held, at most one entry per location: their"
        " `quantity` sums to the item's and their `backordered` to its `backordered`. A"
        " shop that never names a location sees one entry at `default`.",
    )

    @classmethod
    def of(cls, line: domain.Line) -> ItemOut:
        return cls(
            sku=line.sku,
            quantity=line.quantity,
            backordered=line.backordered,
            allocations=[
                AllocationOut(location=a.location, quantity=a.quantity, backordered=a.backordered)
                for a in line.drawn()
            ],
        )


class ReservationOut(BaseModel):
    id: str
    order_id: str
    customer_id: str | None
    status: Status
    items: list[ItemOut]
    expires_at: Timestamp
    created_at: Timestamp

    @classmethod
    def of(cls, reservation: domain.Reservation) -> ReservationOut:
        return cls(
            id=reservation.id,
            order_id=reservation.order_id,
            customer_id=reservation.customer_id,
            status=reservation.status,
            items=[ItemOut.of(line) for line in reservation.lines],
            expires_at=from_ms(reservation.expires_at_ms),
            created_at=from_ms(reservation.created_at_ms),
        )


class ReservationPage(BaseModel):
    items: list[ReservationOut]
    next_cursor: str | None


class ComponentOut(BaseModel):
    """A kit's component: a SKU and how many of it one kit takes."""

    sku: str
    quantity: int


class KitOut(BaseModel):
    sku: str
    components: list[ComponentOut]
    available: int | None = None
    """Whole kits the components' available stock makes now (null in listings)."""

    @classmethod
    def of(cls, kit: Kit, available: int | None = None) -> KitOut:
        return cls(
            sku=kit.sku,
            components=[ComponentOut(sku=c.sku, quantity=c.quantity) for c in kit.components],
            available=available,
        )


class KitPage(BaseModel):
    items: list[KitOut]
    next_cursor: str | None
    """The last kit's SKU when more may follow: pass it as ``after``."""


class LocationLevelOut(BaseModel):
    """A SKU's stock at one location (docs/locations.md#model)."""

    location: str
    on_hand: int
    reserved: int
    available: int
    """on_hand + backorder_max - reserved - safety_stock at this location (may be < 0)."""
    version: int
    safety_stock: int
    backorder_max: int

    @classmethod
    def of(cls, level: LocationLevel) -> LocationLevelOut:
        return cls(
            location=level.location,
            on_hand=level.on_hand,
            reserved=level.reserved,
            available=level.available,
            version=level.version,
            safety_stock=level.safety_stock,
            backorder_max=level.backorder_max,
        )


def breakdown(level: domain.StockLevel) -> tuple[LocationLevel, ...]:
    """The level at every location, the default one first: what the stock read gave, or,
    from a strategy that keeps no locations, the SKU's level as the default location's."""
    if level.locations:
        return level.locations
    return (
        LocationLevel(
            level.sku,
            domain.DEFAULT_LOCATION_CODE,
            level.on_hand,
            level.reserved,
            level.version,
            level.safety_stock,
            level.backorder_max,
        ),
    )


class StockOut(BaseModel):
    sku: str
    on_hand: int
    reserved: int
    available: int
    version: int
    locations: list[LocationLevelOut] = Field(
        default_factory=list,
        description="The level at every location that stocks the SKU, `default` first."
        " `on_hand`, `reserved` and `available` above are the totals over the active ones"
        " (docs/locations.md#totals); a shop that never names a location sees one entry.",
    )

    @classmethod
    def of(cls, level: domain.StockLevel) -> StockOut:
        return cls(
            sku=level.sku,
            on_hand=level.on_hand,
            reserved=level.reserved,
            available=level.available,
            version=level.version,
            locations=[LocationLevelOut.of(at) for at in breakdown(level)],
        )


class LocationOut(BaseModel):
    code: str
    name: str
    priority: int
    active: bool

    @classmethod
    def of(cls, location: Location) -> LocationOut:
        return cls(
            code=location.code,
            name=location.name,
            priority=location.priority,
            active=location.active,
        )


class MovementOut(BaseModel):
    at: Timestamp
    delta: int
    on_hand_after: int
    """At ``location``: each location's on_hand follows its own movements."""
    reason: str
    reservation_id: str | None
    location: str = Field(
        description="Where the units moved (docs/locations.md): `default` unless the SKU is "
        "stocked at several locations."
    )

    @classmethod
    def of(cls, movement: domain.Movement) -> MovementOut:
        return cls(
            at=from_ms(movement.at_ms),
            delta=movement.delta,
            on_hand_after=movement.on_hand_after,
            reason=movement.reason,
            reservation_id=movement.reservation_id,
            location=movement.location,
        )


class MovementPage(BaseModel):
    items: list[MovementOut]
    next_cursor: str | None


class VariantOut(BaseModel):
    sku: str
    options: dict[str, str]
    on_hand: int
    reserved: int
    available: int


class ProductOut(BaseModel):
    id: str
    name: str
    options: dict[str, list[str]]
    variants: list[VariantOut]

    @classmethod
    def of(cls, product: domain.Product) -> ProductOut:
        return cls(
            id=product.id,
            name=product.name,
            options={axis: list(values) for axis, values in product.options.items()},
            variants=[
                VariantOut(
                    sku=variant.sku,
                    options=dict(variant.options),
                    on_hand=variant.stock.on_hand,
                    reserved=variant.stock.reserved,
                    available=variant.stock.available,
                )
                for variant in product.variants
            ],
        )


class ProductPage(BaseModel):
    """The first ``limit`` products by name (then id) that match the search."""

    items: list[ProductOut]
    next_cursor: str | None


class ShortfallOut(BaseModel):
    sku: str
    requested: int
    available: int


class CustomerLimitOut(BaseModel):
    sku: str
    customer_max: int
    units: int
    """Units this customer already holds or bought of the SKU."""
    requested: int


class FieldErrorOut(BaseModel):
    field: str
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details; the optional members appear only for their kinds."""

    type: str
    title: str
    status: int
    detail: str
    shortfalls: list[ShortfallOut] | None = Field(
        default=None, description="out-of-stock: every line the stock cannot fill"
    )
    current: StockOut | None = Field(
        default=None, description="stock-changed, below-reserved: the stock as it is now"
    )
    policy: PolicyOut | None = Field(
        default=None, description="policy-changed: the SKU's policy as it is now"
    )
    limit: CustomerLimitOut | None = Field(
        default=None, description="customer-limit: the cap and what the customer has"
    )
    skus: list[str] | None = Field(
        default=None, description="unknown-sku, duplicate-sku: the SKUs concerned"
    )
    errors: list[FieldErrorOut] | None = Field(
        default=None, description="invalid-input: each field that was refused and why"
    )
