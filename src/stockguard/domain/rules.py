"""The decisions on stock and reservations: pure functions of values, no I/O.

Every store and strategy calls these on rows its transaction has read (locked, where the
backend locks rows), then writes exactly what they decide; the Redis Lua scripts mirror
``replay_or_conflict`` and ``ending`` and name them in a comment
(docs/design.md#reservation-lifecycle, docs/design.md#idempotency).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stockguard.domain.errors import (
    BelowReserved,
    CustomerLimit,
    IdempotencyConflict,
    InvalidInput,
    InvalidState,
    OutOfStock,
    ReservationExpired,
    Shortfall,
    StockChanged,
    StockguardError,
    UnknownSku,
)
from stockguard.domain.model import (
    HOLD_LIFETIME_S_MAX,
    ON_HAND_MAX,
    Allocation,
    Line,
    Reservation,
    ReserveOutcome,
    ReserveRequest,
    Status,
    StockLevel,
)
from stockguard.domain.policy import CustomerUnits, count_hold, customer_refusal


def shortfalls(levels: Mapping[str, StockLevel], lines: Iterable[Line]) -> tuple[Shortfall, ...]:
    """Every line that the given stock cannot fill; empty when the whole request fits."""
    missing = [line.sku for line in lines if line.sku not in levels]
    if missing:
        raise UnknownSku(missing)
    return tuple(
        Shortfall(line.sku, line.quantity, max(levels[line.sku].available, 0))
        for line in lines
        if levels[line.sku].available < line.quantity
    )


def backordered(levels: Mapping[str, StockLevel], lines: Iterable[Line]) -> dict[str, int]:
    """Per SKU, the units of ``lines`` that holding them on ``levels`` (as they stand
    before the hold) puts on the backorder allowance; only SKUs with some
    (docs/design.md#backorders). Empty, at the cost of one test per line, for a shop
    without backorders."""
    found: dict[str, int] = {}
    for line in lines:
        level = levels[line.sku]
        if level.backorder_max:
            units = level.backordered(line.quantity)
            if units:
                found[line.sku] = units
    return found


def hold(levels: Mapping[str, StockLevel], lines: Iterable[Line]) -> dict[str, StockLevel]:
    """The stock after holding ``lines``, all or nothing (raises OutOfStock)."""
    line_tuple = tuple(lines)
    short = shortfalls(levels, line_tuple)
    if short:
        raise OutOfStock(short)
    after = dict(levels)
    _take(after, line_tuple)
    return after


def _take(levels: dict[str, StockLevel], lines: Iterable[Line]) -> None:
    """Moves ``lines`` into ``reserved``, in place; the caller checked that they fit."""
    for line in lines:
        level = levels[line.sku]
        # The constructor, not dataclasses.replace (5x slower): a batch takes 1,000s.
        levels[line.sku] = StockLevel(
            level.sku,
            level.on_hand,
            level.reserved + line.quantity,
            level.version + 1,
            level.safety_stock,
            level.customer_max,
            level.backorder_max,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one request of a batch: held (``shortfall`` empty) or refused."""

    request: ReserveRequest
    shortfall: tuple[Shortfall, ...]
    refused: CustomerLimit | InvalidInput | None = None
    """A per-customer cap refused it (or it named no customer for a capped SKU); checked
    before the stock, so a capped customer hears why whatever is left."""
    backordered: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Of a granted request, the units per SKU its turn put on the backorder allowance."""

    @property
    def held(self) -> bool:
        return not self.shortfall and self.refused is None


def decide_in_order(
    levels: Mapping[str, StockLevel],
    requests: Sequence[ReserveRequest],
    units: CustomerUnits | None = None,
) -> tuple[dict[str, StockLevel], tuple[Decision, ...]]:
    """Grants requests strictly in arrival order, each all-or-nothing.

    A request that cannot be filled is refused at its turn and the next one in line gets
    what is left: first come, first served, and no request is starved by a larger one
    behind it. Unknown SKUs must be filtered out by the caller. ``units``: the counts
    of the capped (customer, SKU) pairs (``policy.capped_pairs``) as the locked rows
    stood; the batch's own grants are added as it goes, so two requests of one customer
    in one batch cannot both pass a cap.
    """
    current = dict(levels)
    decisions: list[Decision] = []
    counted = dict(units) if units is not None else None
    for request in requests:
        if counted is not None:
            capped = customer_refusal(current, counted, request)
            if capped is not None:
                decisions.append(Decision(request, (), capped))
                continue
        # ``hold`` without its exception: a sold-out batch refuses a thousand requests here.
        short = shortfalls(current, request.lines)
        if short:
            decisions.append(Decision(request, short))
            continue
        beyond = backordered(current, request.lines)
        _take(current, request.lines)
        if counted is not None:
            count_hold(counted, request)
        decisions.append(Decision(request, short, None, beyond))
    return current, tuple(decisions)


def check_transition(reservation: Reservation, target: Status, now_ms: int) -> bool:
    """Whether moving ``reservation`` to ``target`` must write anything.

    Returns False for a replay (already in ``target``: confirm and release are replay-safe),
    True when the transition applies, and raises when it is not allowed.
    """
    if reservation.status is target:
        return False
    if target is Status.RELEASED and reservation.status is Status.EXPIRED:
        return False  # the stock is already back: what the caller asked for is done
    if reservation.status.is_terminal:
        if target is Status.CONFIRMED and reservation.status is Status.EXPIRED:
            raise ReservationExpired(reservation.id)
        action = {Status.CONFIRMED: "confirm", Status.RELEASED: "release"}.get(target, "expire")
        raise InvalidState(reservation.id, reservation.status, action)
    if target is Status.CONFIRMED and now_ms >= reservation.expires_at_ms:
        raise ReservationExpired(reservation.id)
    if target is Status.EXPIRED and now_ms < reservation.expires_at_ms:
        raise InvalidState(reservation.id, reservation.status, "expire")
    return True


def check_on_hand_change(
    current: StockLevel, on_hand_new: int, expected_on_hand: int | None
) -> None:
    """An admin write applies only to the stock the admin saw (docs/design.md#seed-001)."""
    if expected_on_hand is not None and current.on_hand != expected_on_hand:
        raise StockChanged(current, expected_on_hand)
    if on_hand_new + current.backorder_max < current.reserved:
        raise BelowReserved(current, on_hand_new)
    if on_hand_new > ON_HAND_MAX:
        raise InvalidInput("on_hand", f"must be at most {ON_HAND_MAX}")


# ---------------------------------------------------------------------------- reservations


def new_reservation(
    request: ReserveRequest,
    reservation_id: str,
    now_ms: int,
    backordered: Mapping[str, int] | None = None,
    allocations: Mapping[str, tuple[Allocation, ...]] | None = None,
) -> Reservation:
    """The hold a granted ``request`` becomes at ``now_ms`` (the store's clock), under the
    id the caller drew: held until ``now_ms + ttl``. ``backordered``: what ``backordered``
    said on the levels the hold was decided on. ``allocations``: per SKU stocked at
    several locations, where its line drew from (docs/locations.md#model); a line's
    ``backordered`` is then the sum of its allocations'."""
    lines = request.lines
    if allocations:
        lines = tuple(
            Line(
                line.sku,
                line.quantity,
                sum(a.backordered for a in allocations[line.sku]),
                allocations=allocations[line.sku],
            )
            if line.sku in allocations
            else Line(line.sku, line.quantity, (backordered or {}).get(line.sku, 0))
            for line in lines
        )
    elif backordered:
        lines = tuple(Line(line.sku, line.quantity, backordered.get(line.sku, 0)) for line in lines)
    return Reservation(
        id=reservation_id,
        order_id=request.order_id,
        customer_id=request.customer_id,
        status=Status.HELD,
        lines=lines,
        expires_at_ms=now_ms + request.ttl_s * 1000,
        created_at_ms=now_ms,
    )


def replay_or_conflict(
    earlier: Reservation, request: ReserveRequest
) -> ReserveOutcome | IdempotencyConflict:
    """The answer to a request whose order_id is already stored as ``earlier``
    (docs/design.md#idempotency): the same lines replay the original hold
    (``created=False``, even after the SKU sold out), other lines are a conflict.

    Returns the error rather than raising it: a batch answers each request on its own.
    Mirrored by ``stores/redis/reserve.lua`` (it returns the stored hold, Python decides).
    """
    if earlier.same_request(request.lines):
        return ReserveOutcome(earlier, created=False)
    return IdempotencyConflict(request.order_id, earlier.id)


@dataclass(frozen=True, slots=True)
class Ending:
    """What a confirm or release of one reservation decides at ``now_ms``."""

    writes: Status | None
    """The terminal status the held reservation moves to; None: nothing to write."""
    answer: Reservation | StockguardError
    """The reservation as it is afterwards, or the error the caller gets (after the
    write is committed: a confirm past expiry still ends the hold as expired)."""

    def result(self) -> Reservation:
        """The answer, raising it when it is an error."""
        if isinstance(self.answer, StockguardError):
            raise self.answer
        return self.answer


def ending(reservation: Reservation, target: Status, now_ms: int) -> Ending:
    """Confirm (``target`` CONFIRMED) or release (RELEASED) ``reservation`` at ``now_ms``.

    A hold past its expiry by the store's clock ends as expired whatever was asked, and a
    confirm of it is refused (``ReservationExpired``) even if no sweep has run yet
    (docs/design.md#one-clock); otherwise ``check_transition`` decides (replays write
    nothing, terminal states refuse). Mirrored by ``stores/redis/confirm.lua`` and
    ``release.lua``.
    """
    if reservation.status is Status.HELD and now_ms >= reservation.expires_at_ms:
        expired = dataclasses.replace(reservation, status=Status.EXPIRED)
        if target is Status.CONFIRMED:
            return Ending(Status.EXPIRED, ReservationExpired(reservation.id))
        return Ending(Status.EXPIRED, expired)
    try:
        changes = check_transition(reservation, target, now_ms)
    except StockguardError as refused:
        return Ending(None, refused)
    if not changes:
        return Ending(None, reservation)
    return Ending(target, dataclasses.replace(reservation, status=target))


@dataclass(frozen=True, slots=True)
class Extension:
    """What an extend of one reservation decides at ``now_ms`` (docs/design.md#extending-a-hold)."""

    expires: bool
    """The hold is past its expiry by the store's clock: end it as expired (the write a
    late confirm makes too), then refuse with ``answer``."""
    expires_at_ms: int | None
    """The new expiry to write; None: nothing to write."""
    answer: Reservation | StockguardError

    def result(self) -> Reservation:
        if isinstance(self.answer, StockguardError):
            raise self.answer
        return self.answer


def extension(
    reservation: Reservation,
    ttl_s: int,
    now_ms: int,
    lifetime_ms: int = HOLD_LIFETIME_S_MAX * 1000,
) -> Extension:
    """Extend ``reservation`` to ``now_ms + ttl_s`` at ``now_ms`` (the store's clock, read
    with the reservation's row locked: the sweep cannot take it meanwhile).

    * Only a hold that is held and not yet past its expiry moves; one past it ends as
      expired here, whether or not the sweeper came (docs/design.md#one-clock), and the
      caller gets ``ReservationExpired`` as a late confirm does. An expired hold is
      ``ReservationExpired``; a confirmed or released one ``InvalidState``.
    * The new expiry is never earlier than the current one (an extension that would
      shorten the hold writes nothing and answers it as it is): a retried or reordered
      extend can only leave the longer of the two, so a replay does no harm.
    * It is clamped to ``created_at + lifetime_ms`` rather than refused: the client
      asked for "more time", gets as much as the limit allows and reads how much in
      ``expires_at``; at the limit every further extend answers the same hold unchanged.
    """
    if reservation.status is Status.HELD and now_ms >= reservation.expires_at_ms:
        return Extension(True, None, ReservationExpired(reservation.id))
    if reservation.status is Status.EXPIRED:
        return Extension(False, None, ReservationExpired(reservation.id))
    if reservation.status.is_terminal:
        return Extension(False, None, InvalidState(reservation.id, reservation.status, "extend"))
    wanted = min(now_ms + ttl_s * 1000, reservation.created_at_ms + lifetime_ms)
    if wanted <= reservation.expires_at_ms:
        return Extension(False, None, reservation)
    return Extension(False, wanted, dataclasses.replace(reservation, expires_at_ms=wanted))


@dataclass(frozen=True, slots=True)
class PartRelease:
    """What giving back some units of one reservation decides at ``now_ms``."""

    ends: Status | None
    """The hold ends: EXPIRED (past its expiry, nothing was given back by this request)
    or RELEASED (every unit it held is given back: a full release of what remained).
    Written as any ending is; None: it does not end."""
    given: tuple[Line, ...]
    """Lines given back while the hold stays held (``ends`` is None); empty otherwise."""
    answer: Reservation | StockguardError

    def result(self) -> Reservation:
        if isinstance(self.answer, StockguardError):
            raise self.answer
        return self.answer


def release_part(reservation: Reservation, lines: Sequence[Line], now_ms: int) -> PartRelease:
    """Give back ``lines`` (validated, each SKU once) of ``reservation`` at ``now_ms``.

    The rest stays held with its expiry; a line reaching 0 is removed (a line is never
    0: the schema's ``quantity > 0``), and when every line reaches 0 the hold is
    released, exactly as a full release of what it still held. Past its expiry the hold
    ends as expired and is answered as a full release would be (docs/design.md#one-clock);
    a released or expired hold is answered as it is (its units are back already); a
    confirmed one is ``InvalidState``. Giving back a SKU the hold does not hold, or more
    units than it holds, is ``InvalidInput`` and nothing changes.

    Not idempotent, unlike a full release: "give back 1" twice gives back 2 (while there
    is something left to give back). A client that is unsure whether its request applied
    reads the reservation first (docs/design.md#partial-release).
    """
    if reservation.status is Status.HELD and now_ms >= reservation.expires_at_ms:
        return PartRelease(
            Status.EXPIRED, (), dataclasses.replace(reservation, status=Status.EXPIRED)
        )
    if reservation.status is Status.CONFIRMED:
        return PartRelease(None, (), InvalidState(reservation.id, reservation.status, "release"))
    if reservation.status.is_terminal:
        return PartRelease(None, (), reservation)
    held = {line.sku: line.quantity for line in reservation.lines}
    for line in lines:
        if line.sku not in held:
            return PartRelease(
                None, (), InvalidInput("items", f"{line.sku!r} is not held by this reservation")
            )
        if line.quantity > held[line.sku]:
            return PartRelease(
                None,
                (),
                InvalidInput(
                    "items",
                    f"gives back {line.quantity} of {line.sku!r} but the reservation "
                    f"holds {held[line.sku]}",
                ),
            )
        held[line.sku] -= line.quantity
    remaining = remaining_lines(reservation.lines, lines)
    if not remaining:
        return PartRelease(
            Status.RELEASED, (), dataclasses.replace(reservation, status=Status.RELEASED)
        )
    return PartRelease(None, tuple(lines), dataclasses.replace(reservation, lines=remaining))


def remaining_lines(held: Sequence[Line], given: Sequence[Line]) -> tuple[Line, ...]:
    """``held`` less ``given`` per SKU, lines at 0 left out (the arithmetic a store does
    to write what ``release_part`` decided). Units given back leave the backordered
    part of a line first: what was never on the shelf is the first to stop being owed."""
    back = {line.sku: line.quantity for line in given}
    return tuple(
        Line(
            line.sku,
            line.quantity - back.get(line.sku, 0),
            max(line.backordered - back.get(line.sku, 0), 0),
            allocations=shrink_allocations(line.allocations, back.get(line.sku, 0)),
        )
        for line in held
        if line.quantity > back.get(line.sku, 0)
    )


def shrink_allocations(allocations: Sequence[Allocation], units: int) -> tuple[Allocation, ...]:
    """A located line's allocations less ``units`` given back (docs/locations.md#settling):
    backordered units first, as for a line, then in the reverse of the order drawn, so
    what stays held is what the policy would have drawn first. Allocations reaching 0
    are left out; no allocations (a default-location line) stay none."""
    left = units
    backordered = [a.backordered for a in allocations]
    quantity = [a.quantity for a in allocations]
    for index in reversed(range(len(allocations))):
        taken = min(backordered[index], left)
        backordered[index] -= taken
        quantity[index] -= taken
        left -= taken
    for index in reversed(range(len(allocations))):
        taken = min(quantity[index], left)
        quantity[index] -= taken
        left -= taken
    return tuple(
        Allocation(a.location, quantity[index], backordered[index])
        for index, a in enumerate(allocations)
        if quantity[index] > 0
    )


def refusal(levels: Mapping[str, StockLevel], lines: Sequence[Line]) -> StockguardError:
    """The error for a request the stock refused, with every line's shortfall in ``levels``
    (read after the refusal): UnknownSku when a SKU is missing, else OutOfStock; if the
    stock came back meanwhile, every line is named with what is available now."""
    try:
        short = shortfalls(levels, lines)
    except UnknownSku as unknown:
        return unknown
    if not short:
        short = tuple(
            Shortfall(line.sku, line.quantity, levels[line.sku].available) for line in lines
        )
    return OutOfStock(short)
