"""Stock at several locations, for every store and every SQL strategy (docs/locations.md).

The default location's level of a SKU is its ``stock_levels`` row (``StockLevel``); a SKU
stocked anywhere else too is ``located``, and its other levels are ``location_levels``
rows. A shop that never names a location therefore runs exactly as before: no strategy
reads a location level unless the SKU row it already read says ``located``, or a line is
pinned elsewhere (``needs_locations``).

Everything here composes the transaction API (``stores/contract.py``) with the pure
decisions of ``domain/locations.py``: read the levels (locked, or not for the conditional
and optimistic strategies), decide, write exactly what changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from stockguard import domain
from stockguard.domain import Line, ReserveRequest, StockLevel
from stockguard.domain.locations import (
    AllocationPolicy,
    AllocationRequest,
    LevelsBySku,
    Location,
    LocationDecision,
    LocationLevel,
    decide_in_order_by_location,
    sku_totals,
)
from stockguard.stores.contract import StoreTx

DEFAULT = domain.DEFAULT_LOCATION_CODE

LevelDeltas = dict[str, tuple[int, int]]
"""SKU -> (on_hand change, reserved change) of its default-location level (its row)."""
LocationDeltas = dict[tuple[str, str], tuple[int, int]]
"""(SKU, location) -> (on_hand change, reserved change) of a level at another location."""


def default_level(level: StockLevel) -> LocationLevel:
    """A SKU's row as its level at the default location."""
    return LocationLevel(
        level.sku,
        DEFAULT,
        level.on_hand,
        level.reserved,
        level.version,
        level.safety_stock,
        level.backorder_max,
    )


def needs_locations(levels: Mapping[str, StockLevel], request: ReserveRequest) -> bool:
    """Whether ``request`` must be decided by the allocation policy: a SKU of it is stocked
    at several locations, or a line is pinned to a location other than the default one
    (which a SKU stocked only there cannot give)."""
    for line in request.lines:
        if line.location is not None and line.location != DEFAULT:
            return True
        level = levels.get(line.sku)
        if level is not None and level.located:
            return True
    return False


def pinned_elsewhere(request: ReserveRequest) -> bool:
    """A line asks for a location other than the default one (decided before any read)."""
    return any(line.location is not None and line.location != DEFAULT for line in request.lines)


async def by_location(
    tx: StoreTx, levels: Mapping[str, StockLevel], *, lock: bool
) -> dict[str, dict[str, LocationLevel]]:
    """Every level of ``levels``' SKUs, by SKU then location: the rows already read as the
    default location's, plus the other locations' of the located ones (locked after the
    SKU rows when ``lock``, the order every writer takes them in)."""
    located = [sku for sku, level in levels.items() if level.located]
    others = await tx.location_levels(located, lock=lock) if located else {}
    return {
        sku: {DEFAULT: default_level(level), **others.get(sku, {})} for sku, level in levels.items()
    }


def allocation_request(
    request: ReserveRequest, policy_default: AllocationPolicy
) -> AllocationRequest:
    """``request`` with its location options; the policy name was validated on the way in
    (``domain.validate_reserve``)."""
    policy = (
        AllocationPolicy(request.allocation_policy)
        if request.allocation_policy is not None
        else policy_default
    )
    pinned = {line.sku: line.location for line in request.lines if line.location is not None}
    return AllocationRequest(request, policy, request.split, pinned)


def decide(
    levels: Mapping[str, StockLevel],
    located: LevelsBySku,
    locations: Mapping[str, Location],
    requests: Sequence[ReserveRequest],
    policy_default: AllocationPolicy,
    units: domain.CustomerUnits | None,
) -> tuple[dict[str, dict[str, LocationLevel]], tuple[LocationDecision, ...]]:
    """``decide_in_order_by_location`` on the rows a strategy read for ``requests``."""
    caps = {sku: level.customer_max for sku, level in levels.items()}
    return decide_in_order_by_location(
        located,
        locations,
        [allocation_request(request, policy_default) for request in requests],
        units,
        caps,
    )


def new_reservation(
    levels: Mapping[str, StockLevel],
    decision: LocationDecision,
    reservation_id: str,
    now_ms: int,
) -> domain.Reservation:
    """The hold a granted located decision becomes: the lines of located SKUs carry their
    allocations; a SKU stocked only at the default location keeps an allocation-free line
    (settled on its row, as every line before locations), with its backordered units."""
    allocations = {sku: drawn for sku, drawn in decision.allocations.items() if levels[sku].located}
    backordered = {line.sku: line.backordered for line in decision.lines if line.backordered}
    return domain.new_reservation(
        decision.request.request, reservation_id, now_ms, backordered, allocations
    )


def refusal(decision: LocationDecision) -> domain.StockguardError:
    if decision.refused is not None:
        return decision.refused
    return domain.OutOfStock(decision.shortfall)


def deltas(before: LevelsBySku, after: LevelsBySku) -> tuple[LevelDeltas, LocationDeltas]:
    """What changed between two states of the same levels, split by where it is written."""
    at_default: LevelDeltas = {}
    elsewhere: LocationDeltas = {}
    for sku, by_code in after.items():
        for code, level in by_code.items():
            old = before[sku][code]
            change = (level.on_hand - old.on_hand, level.reserved - old.reserved)
            if change == (0, 0):
                continue
            if code == DEFAULT:
                at_default[sku] = change
            else:
                elsewhere[(sku, code)] = change
    return at_default, elsewhere


def settled(lines: Iterable[tuple[Line, bool]]) -> tuple[LevelDeltas, LocationDeltas]:
    """What ending lines gives back, per level: each allocation's units leave ``reserved``
    where they were held, and ``on_hand`` too when sold (docs/locations.md#settling)."""
    at_default: LevelDeltas = {}
    elsewhere: LocationDeltas = {}
    for line, sold in lines:
        for allocation in line.drawn():
            quantity = allocation.quantity
            change = (-quantity if sold else 0, -quantity)
            if allocation.location == DEFAULT:
                old = at_default.get(line.sku, (0, 0))
                at_default[line.sku] = (old[0] + change[0], old[1] + change[1])
            else:
                key = (line.sku, allocation.location)
                old = elsewhere.get(key, (0, 0))
                elsewhere[key] = (old[0] + change[0], old[1] + change[1])
    return at_default, elsewhere


def has_elsewhere(lines: Iterable[Line]) -> bool:
    return any(allocation.location != DEFAULT for line in lines for allocation in line.allocations)


async def write(
    tx: StoreTx, at_default: LevelDeltas, elsewhere: LocationDeltas, now_ms: int
) -> None:
    await tx.move_levels(at_default, now_ms)
    if elsewhere:
        await tx.move_location_levels(elsewhere, now_ms)


async def lock_elsewhere(tx: StoreTx, lines: Iterable[Line]) -> None:
    """Locks the other-location levels ``lines`` hold units at (after their SKU rows)."""
    skus = sorted(
        {
            line.sku
            for line in lines
            for allocation in line.allocations
            if allocation.location != DEFAULT
        }
    )
    if skus:
        await tx.location_levels(skus, lock=True)


async def hold_locked(
    tx: StoreTx,
    request: ReserveRequest,
    levels: Mapping[str, StockLevel],
    policy_default: AllocationPolicy,
    new_id: Callable[[], str],
    now_ms: int,
) -> domain.Reservation:
    """One request decided by the allocation policy on levels the caller locked (its SKU
    rows; the other locations' are locked here): written with its hold, which is
    returned. Raises the refusal (UnknownSku, OutOfStock, CustomerLimit, InvalidInput for
    a pin to no location) before anything is written. The caps' counts are read on the
    locked rows, as ``stores.operations.customer_units`` reads them."""
    missing = [sku for sku in request.skus if sku not in levels]
    if missing:
        raise domain.UnknownSku(missing)
    units = None
    if any(levels[sku].customer_max is not None for sku in request.skus):
        units = await tx.customer_units(domain.capped_pairs(levels, [request]))
    before = await by_location(tx, levels, lock=True)
    after, (decision,) = decide(
        levels, before, await tx.locations(), [request], policy_default, units
    )
    if not decision.held:
        raise refusal(decision)
    await write(tx, *deltas(before, after), now_ms)
    reservation = new_reservation(levels, decision, new_id(), now_ms)
    await tx.insert_reservations([reservation])
    return reservation


def totals(
    level: StockLevel, others: Mapping[str, LocationLevel], locations: Mapping[str, Location]
) -> StockLevel:
    """A SKU's level as stock reads show it: the counts summed over its active locations,
    and the level at every location (``locations``, the default one first).

    ``available`` is the totals' (each active location's counted from 0,
    docs/locations.md#totals): the shown ``safety_stock`` is what the totals keep out so
    that the level's own formula gives it, and ``backorder_max`` the sum of the active
    allowances. A SKU stocked only at the default location is shown as its row."""
    everywhere = {DEFAULT: default_level(level), **others}
    breakdown = tuple(everywhere[code] for code in sorted(everywhere, key=_default_first))
    if not others:
        return StockLevel(
            level.sku,
            level.on_hand,
            level.reserved,
            level.version,
            level.safety_stock,
            level.customer_max,
            level.backorder_max,
            level.located,
            breakdown,
        )
    known = {code: locations[code] for code in everywhere if code in locations}
    summed = sku_totals(level.sku, {c: v for c, v in everywhere.items() if c in known}, known)
    active = [v for c, v in everywhere.items() if c in known and known[c].active]
    backorder_max = sum(v.backorder_max for v in active)
    return StockLevel(
        level.sku,
        summed.on_hand,
        summed.reserved,
        sum(v.version for v in everywhere.values()),
        summed.on_hand + backorder_max - summed.reserved - summed.available,
        level.customer_max,
        backorder_max,
        True,
        breakdown,
    )


def _default_first(code: str) -> tuple[bool, str]:
    return (code != DEFAULT, code)
