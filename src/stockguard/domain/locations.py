"""Stock per location and the allocation policy that picks where a hold draws from: pure,
no I/O (issue 14; the design note is docs/locations.md).

A SKU's stock is kept per (sku, location) as a ``LocationLevel``, each with I1 of its own
(docs/locations.md#invariants). A hold's line draws its units from one or more locations;
what it drew is recorded as the line's ``Allocation``s, and confirm, release and expiry
settle exactly those (``settle``), so no later change of policy, priority or stock can make
an ending give units back to a location they never came from.

Every decision here is taken on levels a strategy has read locked (or atomically), as the
rules in ``rules.py`` are: ``allocate`` for one line, ``decide_in_order_by_location`` for a
batch in arrival order. Nothing here is wired into ``stockguard.domain`` yet: the stores
do not keep locations so far (docs/locations.md#built-and-not-built).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stockguard.domain.errors import CustomerLimit, InvalidInput, Shortfall, UnknownSku
from stockguard.domain.model import DEFAULT_LOCATION_CODE as DEFAULT_LOCATION_CODE
from stockguard.domain.model import (
    SKU_LEN_MAX,
    TEXT_FORBIDDEN,
    Line,
    ReserveRequest,
    StockLevel,
)
from stockguard.domain.model import Allocation as Allocation
from stockguard.domain.policy import CustomerUnits, count_hold, customer_refusal
from stockguard.domain.validation import ALLOCATION_POLICIES

# Limits (docs/locations.md#limits). Every input is checked against these before any write.
LOCATION_CODE_LEN_MAX = SKU_LEN_MAX
"""A location code follows a SKU's rules (1-64 characters, no control or bidi characters):
it appears in the same places, a URL path and the admin page."""
LOCATION_NAME_LEN_MAX = 200
"""As a product name: a shop's own label for a warehouse or a store."""
LOCATION_PRIORITY_MAX = 1_000_000
"""Priorities run 0 (drawn from first) to this: room to insert a location between two
others without renumbering the rest."""
LOCATIONS_MAX = 100
"""Locations a shop may have. A hold locks one level per (line, location) it may draw
from, so a 100-line hold may lock up to 10,000 rows: this bound keeps that finite and
every loop below over a SKU's locations bounded."""
ALLOCATIONS_PER_LINE_MAX = LOCATIONS_MAX
"""A line draws at most once from each location (``allocate`` merges a location's shelf and
backorder units into one allocation)."""

_FORBIDDEN = re.compile(f"[{TEXT_FORBIDDEN}]")


class AllocationPolicy(enum.StrEnum):
    """How a line picks the locations it draws from (docs/locations.md#allocation-policy)."""

    PRIORITY = "priority"
    """Fill from the location with the lowest ``priority`` number that has stock, then the
    next: the admin's own sort order, so where a sale ships from is predictable."""
    MOST_AVAILABLE = "most_available"
    """Fill from the location with the most available, then the next most: spreads the
    sale, and keeps a small store's last units for its walk-in customers."""


_POLICY_NAMES = frozenset(policy.value for policy in AllocationPolicy)
assert set(ALLOCATION_POLICIES) == _POLICY_NAMES, "validation's copy of the names"

ALLOCATION_POLICY_DEFAULT = AllocationPolicy.PRIORITY
"""The shop's default when a request names none: predictable (the admin's sort order), and
for a one-location shop any policy draws from the one location."""
SPLIT_DEFAULT = True
"""A line may be split over locations unless the request says ``split: false``: refusing a
line that the shop's stock as a whole could fill would be a refusal the buyer cannot
understand; a shop that ships each line from one place asks for it."""


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Location:
    code: str
    name: str
    priority: int = 0
    """Sort order: 0 is drawn from first under ``AllocationPolicy.PRIORITY``, and breaks
    ties under ``MOST_AVAILABLE``."""
    active: bool = True
    """An inactive location stops selling (no new hold draws from it, and its stock leaves
    the SKU's totals) but keeps its holds: they confirm, release and expire as before."""


@dataclass(frozen=True, slots=True)
class LocationLevel:
    """One SKU's stock at one location: ``StockLevel``'s counts, per location.

    ``safety_stock`` and ``backorder_max`` are carried per location
    (docs/locations.md#policy-per-location): the units a store keeps on display are that
    store's, and an allowance to sell beyond the shelf belongs to the location the restock
    will arrive at. I1 holds per level:
    ``0 <= reserved <= on_hand + backorder_max``.
    """

    sku: str
    location: str
    on_hand: int
    reserved: int
    version: int
    safety_stock: int = 0
    backorder_max: int = 0

    @property
    def available(self) -> int:
        """What a hold may still take here; the same formula as ``StockLevel.available``, so
        one location behaves exactly as a SKU did before locations (may be <= 0)."""
        return self.on_hand + self.backorder_max - self.reserved - self.safety_stock

    @property
    def shelf(self) -> int:
        """Units physically free here (on_hand less safety stock less what is held): the
        part of ``available`` that is not the backorder allowance; never negative."""
        return max(self.on_hand - self.safety_stock - self.reserved, 0)

    def backordered(self, quantity: int) -> int:
        """How many of ``quantity`` units, held now here, are beyond the shelf: as
        ``StockLevel.backordered``, per location."""
        beyond = self.reserved + quantity - (self.on_hand - self.safety_stock)
        return min(max(beyond, 0), quantity)


@dataclass(frozen=True, slots=True)
class SkuTotals:
    """A SKU's totals over its active locations (``sku_totals``)."""

    sku: str
    on_hand: int
    reserved: int
    available: int
    """What a split hold could take now: the sum of each active location's available,
    each counted from 0 (a location whose safety stock exceeds its free units takes
    nothing from the others)."""


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    """A validated request with its location options (``validate_allocation_request``)."""

    request: ReserveRequest
    policy: AllocationPolicy = ALLOCATION_POLICY_DEFAULT
    split: bool = SPLIT_DEFAULT
    pinned: Mapping[str, str] = field(default_factory=dict)
    """SKU -> the location its line draws only from (click-and-collect)."""


LevelsByLocation = Mapping[str, LocationLevel]
"""One SKU's levels, by location code."""
LevelsBySku = Mapping[str, LevelsByLocation]
"""SKU -> location code -> level: the rows a strategy read for a batch."""
Allocations = Mapping[str, tuple[Allocation, ...]]
"""SKU -> the allocations of that SKU's line."""


# ---------------------------------------------------------------------------- validation


def validate_location(code: object, name: object, priority: object, active: object) -> Location:
    """A location, checked against every limit before anything is written."""
    if not isinstance(code, str) or not 1 <= len(code) <= LOCATION_CODE_LEN_MAX:
        raise InvalidInput("code", f"must be 1-{LOCATION_CODE_LEN_MAX} characters")
    if _FORBIDDEN.search(code):
        raise InvalidInput("code", "must not contain control characters")
    if not isinstance(name, str) or not 1 <= len(name) <= LOCATION_NAME_LEN_MAX:
        raise InvalidInput("name", f"must be 1-{LOCATION_NAME_LEN_MAX} characters")
    if _FORBIDDEN.search(name):
        raise InvalidInput("name", "must not contain control characters")
    # bool is an int in Python; a JSON true must not become priority 1.
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidInput("priority", "must be an integer")
    if not 0 <= priority <= LOCATION_PRIORITY_MAX:
        raise InvalidInput("priority", f"must be between 0 and {LOCATION_PRIORITY_MAX}")
    if not isinstance(active, bool):
        raise InvalidInput("active", "must be true or false")
    return Location(code, name, priority, active)


def validate_allocation_request(
    request: ReserveRequest,
    locations: Mapping[str, Location],
    policy: object = ALLOCATION_POLICY_DEFAULT,
    split: object = SPLIT_DEFAULT,
    pinned: Mapping[str, object] | None = None,
) -> AllocationRequest:
    """The location options of an already validated ``request``: a known policy, a bool
    ``split``, and each pinned line one of the request's SKUs at a known location (an
    inactive one is valid input: it is refused by the stock, as a sold-out location is)."""
    if not isinstance(policy, str) or policy not in _POLICY_NAMES:
        names = ", ".join(sorted(_POLICY_NAMES))
        raise InvalidInput("allocation_policy", f"must be one of {names}")
    chosen = AllocationPolicy(str(policy))
    if not isinstance(split, bool):
        raise InvalidInput("split", "must be true or false")
    checked: dict[str, str] = {}
    for sku, code in (pinned or {}).items():
        if sku not in request.skus:
            raise InvalidInput("items", f"{sku!r} is pinned to a location but not asked for")
        if not isinstance(code, str) or code not in locations:
            raise InvalidInput(f"items[{request.skus.index(sku)}].location", "unknown location")
        checked[sku] = code
    return AllocationRequest(request, chosen, split, checked)


# ---------------------------------------------------------------------------- allocation


def _order(
    levels: LevelsByLocation, locations: Mapping[str, Location], policy: AllocationPolicy
) -> list[LocationLevel]:
    """The levels a line may draw from, in the order it draws: active locations only, by
    the policy's key. Ties always end on the location code, unique, so the order never
    depends on how a mapping happened to be filled (docs/locations.md#ties)."""
    usable = [
        level
        for code, level in levels.items()
        if (location := locations.get(code)) is not None and location.active
    ]
    if policy is AllocationPolicy.PRIORITY:
        usable.sort(key=lambda level: (locations[level.location].priority, level.location))
    else:
        usable.sort(
            key=lambda level: (
                -max(level.available, 0),
                locations[level.location].priority,
                level.location,
            )
        )
    assert len(usable) <= LOCATIONS_MAX, "more locations than LOCATIONS_MAX"
    return usable


def allocate(
    levels_by_location: LevelsByLocation,
    locations: Mapping[str, Location],
    line: Line,
    policy: AllocationPolicy = ALLOCATION_POLICY_DEFAULT,
    split: bool = SPLIT_DEFAULT,
    pinned: str | None = None,
) -> tuple[Allocation, ...] | Shortfall:
    """Where ``line`` draws its units from, or the ``Shortfall`` that refuses it.

    ``levels_by_location``: the line's SKU's levels by location code, as read locked; a
    location without a level for the SKU has none of it. Only active locations are drawn
    from, never more than a level's ``available``, and with ``pinned`` only that one.

    The shelf before the promise: a first pass takes physically free units (``shelf``) in
    the policy's order, and only what that leaves short is taken from backorder allowances,
    in the same order, so no line backorders while a permitted location has it on the
    shelf. ``split=False`` draws the whole line from the first location in order whose
    shelf covers it, else the first whose available does.

    The allocations come in the order drawn, at most one per location. The shortfall's
    ``available`` is what the line could have had under its own constraints: the sum over
    its permitted locations when split, the best single one when not.
    Returns the shortfall rather than raising it: a batch answers each request on its own.
    A pinned code that is no location at all is ``InvalidInput``
    (``validate_allocation_request`` refuses it before any store is read).
    """
    if pinned is not None:
        if pinned not in locations:
            raise InvalidInput("location", f"unknown location {pinned!r}")
        level = levels_by_location.get(pinned)
        levels_by_location = {} if level is None else {pinned: level}
    order = _order(levels_by_location, locations, policy)
    quantity = line.quantity
    if not split:
        best = max((max(level.available, 0) for level in order), default=0)
        if best < quantity:
            return Shortfall(line.sku, quantity, best)
        chosen = next((level for level in order if level.shelf >= quantity), None)
        if chosen is None:
            chosen = next(level for level in order if level.available >= quantity)
        return (Allocation(chosen.location, quantity, chosen.backordered(quantity)),)
    total = sum(max(level.available, 0) for level in order)
    if total < quantity:
        return Shortfall(line.sku, quantity, total)
    taken: dict[str, int] = {}  # insertion order is the order drawn
    left = quantity
    for level in order:
        if left == 0:
            break
        units = min(level.shelf, left)
        if units:
            taken[level.location] = units
            left -= units
    for level in order:
        if left == 0:
            break
        units = min(max(level.available, 0) - taken.get(level.location, 0), left)
        if units > 0:
            taken[level.location] = taken.get(level.location, 0) + units
            left -= units
    assert left == 0, "the total covered the line, so the passes fill it"
    assert len(taken) <= ALLOCATIONS_PER_LINE_MAX, "one allocation per location at most"
    return tuple(
        Allocation(code, units, levels_by_location[code].backordered(units))
        for code, units in taken.items()
    )


def _held(level: LocationLevel, quantity: int) -> LocationLevel:
    """``level`` with ``quantity`` more units held (the caller checked they fit)."""
    # The constructor, not dataclasses.replace (as rules._take: a batch takes 1,000s).
    return LocationLevel(
        level.sku,
        level.location,
        level.on_hand,
        level.reserved + quantity,
        level.version + 1,
        level.safety_stock,
        level.backorder_max,
    )


@dataclass(frozen=True, slots=True)
class LocationDecision:
    """The verdict on one request of a batch: held with ``allocations``, or refused."""

    request: AllocationRequest
    allocations: Allocations
    """Per SKU, where its line drew from; empty when refused."""
    shortfall: tuple[Shortfall, ...] = ()
    refused: CustomerLimit | InvalidInput | None = None
    """A pin to no known location, or a per-customer cap, refused it: both are checked
    before the stock (as the caps are in ``decide_in_order``), so the caller hears why."""

    @property
    def held(self) -> bool:
        return not self.shortfall and self.refused is None

    @property
    def lines(self) -> tuple[Line, ...]:
        """The request's lines with what they backordered (the sum over their allocations):
        what ``rules.new_reservation`` stores, so a located hold answers as any hold."""
        return tuple(
            Line(
                line.sku,
                line.quantity,
                sum(a.backordered for a in self.allocations.get(line.sku, ())),
            )
            for line in self.request.request.lines
        )


def decide_in_order_by_location(
    levels: LevelsBySku,
    locations: Mapping[str, Location],
    requests: Sequence[AllocationRequest],
    units: CustomerUnits | None = None,
    customer_max: Mapping[str, int | None] | None = None,
) -> tuple[dict[str, dict[str, LocationLevel]], tuple[LocationDecision, ...]]:
    """Grants requests strictly in arrival order, each all-or-nothing across its lines,
    each line allocated by its request's own policy, split and pins (``allocate``).

    ``decide_in_order`` with locations: a request that cannot be filled under its own
    constraints is refused at its turn, and the next one gets what is left; a refused
    request takes nothing, so it changes nothing for those behind it. Returns the levels
    after the batch (every SKU of ``levels``, each level's ``version`` raised once per
    request that drew from it) and a decision per request: a strategy writes the levels
    that changed and each held request's allocations, and nothing else.

    A request's lines name distinct SKUs (``validate_lines``), so its lines never compete
    for one level and are allocated independently. Every SKU asked for must be in
    ``levels`` (``UnknownSku`` otherwise: the caller filters unknown SKUs first, as for
    ``decide_in_order``). ``units`` and ``customer_max`` (SKU -> cap, None: no cap): the
    per-customer caps, counted as in ``decide_in_order``; caps are per SKU, whatever
    location the units come from.
    """
    current = {sku: dict(by_location) for sku, by_location in levels.items()}
    counted = dict(units) if units is not None else None
    caps = {
        sku: StockLevel(sku, 0, 0, 0, customer_max=cap)
        for sku, cap in (customer_max or {}).items()
        if cap is not None
    }  # customer_refusal reads only ``customer_max`` of a level
    decisions: list[LocationDecision] = []
    for located in requests:
        request = located.request
        missing = [sku for sku in request.skus if sku not in current]
        if missing:
            raise UnknownSku(missing)
        unknown = [code for code in located.pinned.values() if code not in locations]
        if unknown:
            refused = InvalidInput("location", f"unknown location {unknown[0]!r}")
            decisions.append(LocationDecision(located, {}, (), refused))
            continue
        if counted is not None and caps:
            capped = customer_refusal(caps, counted, request)
            if capped is not None:
                decisions.append(LocationDecision(located, {}, (), capped))
                continue
        drawn: dict[str, tuple[Allocation, ...]] = {}
        short: list[Shortfall] = []
        for line in request.lines:
            outcome = allocate(
                current[line.sku],
                locations,
                line,
                located.policy,
                located.split,
                located.pinned.get(line.sku),
            )
            if isinstance(outcome, Shortfall):
                short.append(outcome)
            else:
                drawn[line.sku] = outcome
        if short:
            decisions.append(LocationDecision(located, {}, tuple(short)))
            continue
        for sku, allocations in drawn.items():
            by_location = current[sku]
            for allocation in allocations:
                level = by_location[allocation.location]
                by_location[allocation.location] = _held(level, allocation.quantity)
        if counted is not None:
            count_hold(counted, request)
        decisions.append(LocationDecision(located, drawn))
    return current, tuple(decisions)


# ---------------------------------------------------------------------------- totals, settling


def sku_totals(sku: str, levels: LevelsByLocation, locations: Mapping[str, Location]) -> SkuTotals:
    """A SKU's totals: on_hand, reserved and available summed over its active locations
    (docs/locations.md#totals). An inactive location's levels, holds included, stay in the
    per-location breakdown and out of the totals: the totals are what the SKU sells from.
    A level of another SKU, or at a location that is not in ``locations``, is a caller's
    mistake that would make the totals silently wrong: ``ValueError``."""
    stray = sorted(code for code in levels if code not in locations)
    if stray:
        raise ValueError(f"levels at unknown locations: {', '.join(stray)}")
    others = sorted({level.sku for level in levels.values()} - {sku})
    if others:
        raise ValueError(f"levels of {', '.join(others)} among {sku}'s")
    active = [level for code, level in levels.items() if locations[code].active]
    return SkuTotals(
        sku,
        sum(level.on_hand for level in active),
        sum(level.reserved for level in active),
        sum(max(level.available, 0) for level in active),
    )


def settle(
    levels: LevelsBySku, allocations: Allocations, sold: bool
) -> dict[str, dict[str, LocationLevel]]:
    """The levels after a hold ends: each allocation's units leave ``reserved`` at exactly
    its location, and leave ``on_hand`` too when ``sold`` (a confirm; a release or expiry
    gives them back). Whether the location is still active does not matter: a deactivated
    location keeps its holds until they end (docs/locations.md#deactivating).

    Returns only the levels it changed (one version bump each), for the strategy to
    write; the ledger's ``sale`` movements of a confirm are one per allocation, each
    naming its location. An allocation without its level, or more units than the level
    holds, contradicts I2 (the hold's lines were written with the reserved units):
    ``ValueError``, nothing is decided.
    """
    changed: dict[str, dict[str, LocationLevel]] = {}
    for sku, drawn in allocations.items():
        for allocation in drawn:
            before = changed.get(sku, {}).get(allocation.location)
            if before is None:
                before = levels.get(sku, {}).get(allocation.location)
            if before is None:
                raise ValueError(f"{sku} holds units at {allocation.location!r} without a level")
            if before.reserved < allocation.quantity:
                raise ValueError(
                    f"{sku} at {allocation.location!r}: settling {allocation.quantity}"
                    f" of {before.reserved} reserved"
                )
            bump = 0 if allocation.location in changed.get(sku, {}) else 1
            changed.setdefault(sku, {})[allocation.location] = LocationLevel(
                before.sku,
                before.location,
                before.on_hand - allocation.quantity if sold else before.on_hand,
                before.reserved - allocation.quantity,
                before.version + bump,
                before.safety_stock,
                before.backorder_max,
            )
    return changed
