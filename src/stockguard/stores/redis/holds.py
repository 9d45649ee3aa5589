"""The redis strategy's operations on one keyspace: scripts in, domain values out.

Each method is one script call (sent with whatever other calls are waiting: see
``pipeliner.py``). The scripts decide; this module only
builds their keys and arguments and turns their replies into domain values and typed
errors. ``NotLoaded`` (the keyspace holds no load marker) is a ``StoreUnavailable``: an
empty or fenced Redis answers 503 and never sells.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from stockguard import domain
from stockguard.domain import (
    Reservation,
    ReserveOutcome,
    ReserveRequest,
    Shortfall,
    Status,
    StockLevel,
)
from stockguard.domain.locations import ALLOCATION_POLICY_DEFAULT, Location, LocationLevel
from stockguard.stores import located
from stockguard.stores.redis.client import unavailable_on_error
from stockguard.stores.redis.codec import (
    StreamId,
    encode_lines,
    level_from,
    pairs,
    reservation_from_hash,
    with_allocations,
    with_backordered,
)
from stockguard.stores.redis.keys import KeyLayout
from stockguard.stores.redis.pipeliner import Pipeliner
from stockguard.stores.redis.scripts import script

EXPIRE_BATCH_MAX = 1_000
ENDED_RETENTION_S_DEFAULT = 3_600
"""How long an ended reservation stays readable in Redis; afterwards it is read from SQL."""
READ_SKUS_MAX = 1_000
"""SKUs read per script call (a script blocks Redis while it runs)."""


class NotLoaded(domain.StoreUnavailable):
    def __init__(self) -> None:
        super().__init__(
            "Redis holds no stock for this keyspace (empty, restarted or fenced): "
            "run `stockguard reconcile` to load it from SQL",
            retry_after_s=5,
        )


@dataclass(frozen=True, slots=True)
class KnownOrder:
    """The order_id already has a reservation whose details left Redis (read it in SQL)."""

    reservation_id: str


class RedisHolds:
    def __init__(
        self,
        client: Redis,
        keys: KeyLayout,
        ended_retention_s: int = ENDED_RETENTION_S_DEFAULT,
        pipeliner: Pipeliner | None = None,
    ) -> None:
        assert 60 <= ended_retention_s <= 30 * 86_400
        self.client = client
        self.pipeliner = pipeliner or Pipeliner(client)
        self.keys = keys
        self.retention_ms = str(ended_retention_s * 1000)

    async def _run(self, name: str, keys: list[str], args: Sequence[str]) -> Any:
        reply = await self.pipeliner.call(script(name), keys, list(args))
        if isinstance(reply, list) and reply and reply[0] == "unloaded":
            raise NotLoaded()
        return reply

    # ------------------------------------------------------------------ holds

    async def reserve(
        self,
        request: ReserveRequest,
        reservation_id: str,
        policy_default: str = ALLOCATION_POLICY_DEFAULT.value,
    ) -> ReserveOutcome | KnownOrder:
        """One hold; ``policy_default``: the shop's allocation policy, for a request that
        names none (a SKU stocked at one location draws the same under any)."""
        k = self.keys
        lines = encode_lines(request.lines)
        pins = "\n".join(
            f"{line.sku}\t{line.location}"
            for line in sorted(request.lines, key=lambda line: line.sku)
            if line.location is not None
        )
        reply = await self._run(
            "reserve",
            [k.loaded, k.order(request.order_id), k.reservation(reservation_id), k.due, k.events]
            + [k.stock(line.sku) for line in request.lines],
            [
                reservation_id,
                request.order_id,
                request.customer_id or "",
                str(request.ttl_s * 1000),
                lines,
                k.reservation_prefix,
                k.stock_prefix,
                pins,
                request.allocation_policy or policy_default,
                "1" if request.split else "0",
            ],
        )
        verdict = reply[0]
        if verdict == "held":
            created_at_ms, expires_at_ms = int(reply[1]), int(reply[2])
            reservation = Reservation(
                reservation_id,
                request.order_id,
                request.customer_id,
                Status.HELD,
                # The units the script put on the backorder allowance ('' for none:
                # docs/design.md#backorders), and where located lines drew from.
                with_allocations(with_backordered(request.lines, reply[3]), reply[4] or None),
                expires_at_ms,
                created_at_ms,
            )
            return ReserveOutcome(reservation, created=True)
        if verdict == "known":
            if not reply[2]:
                return KnownOrder(reply[1])
            return replay_or_conflict(reservation_from_hash(reply[1], pairs(reply[2])), request)
        if verdict == "unknown":
            raise domain.UnknownSku(reply[1])
        if verdict == "short":
            flat = reply[1]
            raise domain.OutOfStock(
                [
                    Shortfall(flat[i], int(flat[i + 1]), int(flat[i + 2]))
                    for i in range(0, len(flat), 3)
                ]
            )
        if verdict == "capped":
            sku, cap, have, wanted = reply[1], int(reply[2]), int(reply[3]), int(reply[4])
            raise domain.CustomerLimit(sku, request.customer_id or "", cap, have, wanted)
        if verdict == "badpin":
            raise domain.InvalidInput("location", f"unknown location {reply[1]!r}")
        if verdict == "nocustomer":
            raise domain.InvalidInput(
                "customer_id", f"{reply[1]} is capped per customer: name the customer"
            )
        raise AssertionError(f"reserve.lua answered {reply!r}")

    async def end(self, reservation_id: str, target: Status) -> Reservation | None:
        """Confirms or releases; None when Redis no longer holds the reservation."""
        assert target in (Status.CONFIRMED, Status.RELEASED)
        k = self.keys
        reply = await self._run(
            "confirm" if target is Status.CONFIRMED else "release",
            [k.loaded, k.reservation(reservation_id), k.due, k.events],
            [reservation_id, k.stock_prefix, self.retention_ms],
        )
        if reply[0] == "missing":
            return None
        reservation = reservation_from_hash(reservation_id, pairs(reply[1]))
        # The script has already ended a held reservation; what is left is the verdict on
        # a terminal state, which is the domain's rule (replay, expired, invalid state).
        domain.check_transition(reservation, target, reservation.expires_at_ms)
        return reservation

    async def extend(self, reservation_id: str, ttl_s: int) -> Reservation | None:
        """Extends a held reservation (``extend.lua``); None when Redis no longer holds
        it. Refusals are the domain's (``domain.extension`` on the state the script left)."""
        k = self.keys
        reply = await self._run(
            "extend",
            [k.loaded, k.reservation(reservation_id), k.due, k.events],
            [
                reservation_id,
                k.stock_prefix,
                self.retention_ms,
                str(ttl_s * 1000),
                str(domain.HOLD_LIFETIME_S_MAX * 1000),
            ],
        )
        if reply[0] == "missing":
            return None
        reservation = reservation_from_hash(reservation_id, pairs(reply[1]))
        if reservation.status is Status.HELD:
            return reservation
        # Ended (by the script, past its expiry, or earlier): the domain's refusal.
        return domain.extension(reservation, ttl_s, reservation.expires_at_ms).result()

    async def release_part(
        self, reservation_id: str, lines: Sequence[domain.Line]
    ) -> Reservation | None:
        """Gives back ``lines`` (``release_part.lua``); None when Redis no longer holds
        the reservation. Refusals are ``domain.release_part`` on the state the script saw."""
        k = self.keys
        reply = await self._run(
            "release_part",
            [k.loaded, k.reservation(reservation_id), k.due, k.events],
            [reservation_id, k.stock_prefix, self.retention_ms, encode_lines(lines)],
        )
        if reply[0] == "missing":
            return None
        reservation = reservation_from_hash(reservation_id, pairs(reply[1]))
        if reply[0] == "refused":
            return domain.release_part(reservation, lines, int(reply[2])).result()
        if reservation.status is Status.CONFIRMED:
            return domain.release_part(reservation, lines, 0).result()  # InvalidState
        return reservation

    async def expire_due(self) -> int:
        k = self.keys
        total = 0
        while True:
            reply = await self._run(
                "expire",
                [k.loaded, k.due, k.events],
                [k.reservation_prefix, k.stock_prefix, str(EXPIRE_BATCH_MAX), self.retention_ms],
            )
            ended, looked_at = int(reply[0]), int(reply[1])
            if ended < 0:
                raise NotLoaded()
            total += ended
            if looked_at < EXPIRE_BATCH_MAX:
                return total

    async def get(self, reservation_id: str) -> Reservation | None:
        k = self.keys
        reply = await self._run("reservation", [k.loaded, k.reservation(reservation_id)], [])
        return reservation_from_hash(reservation_id, pairs(reply[1])) if reply[1] else None

    # ------------------------------------------------------------------ stock

    async def levels(self, skus: Sequence[str]) -> list[StockLevel]:
        """Levels of the SKUs that exist, in SKU order."""
        wanted = sorted(set(skus))
        found: list[StockLevel] = []
        for start in range(0, len(wanted), READ_SKUS_MAX):
            chunk = wanted[start : start + READ_SKUS_MAX]
            reply = await self._run(
                "levels",
                [self.keys.loaded] + [self.keys.stock(sku) for sku in chunk],
                [self.keys.stock_prefix, *chunk],
            )
            places = _places(pairs(reply[2])) if len(reply) > 2 else {}
            for sku, values in zip(chunk, reply[1], strict=True):
                if not values:
                    continue
                level = level_from(sku, values)
                if len(values) > 7 and values[6]:  # located (docs/locations.md#totals)
                    level = dataclasses.replace(level, located=True)
                    others = {
                        code: _located_level(sku, code, text)
                        for code, text in pairs(values[7]).items()
                    }
                    found.append(located.totals(level, others, places))
                else:
                    found.append(located.totals(level, {}, {}))
        return found

    async def set_on_hand(self, sku: str, on_hand: int, expected_on_hand: int | None) -> StockLevel:
        k = self.keys
        reply = await self._run(
            "set_on_hand",
            [k.loaded, k.stock(sku), k.skus, k.events],
            [sku, str(on_hand), "" if expected_on_hand is None else str(expected_on_hand)],
        )
        if reply[0] == "unknown":
            raise domain.UnknownSku([sku])
        level = level_from(sku, reply[1:7])
        if reply[0] == "changed":
            assert expected_on_hand is not None
            raise domain.StockChanged(level, expected_on_hand)
        if reply[0] == "below":
            raise domain.BelowReserved(level, on_hand)
        return level

    async def set_location_stock(
        self,
        sku: str,
        location: str,
        on_hand: int,
        expected_on_hand: int | None,
        safety_stock: int | None,
        backorder_max: int | None,
    ) -> None:
        """A SKU's level at a location other than the default one (``set_location.lua``),
        refused as ``stores.operations.set_level`` refuses it: the domain's own checks on
        the level the script saw."""
        k = self.keys
        reply = await self._run(
            "set_location",
            [k.loaded, k.stock(sku), k.skus, k.events],
            [
                sku,
                location,
                str(on_hand),
                _text(expected_on_hand),
                _text(safety_stock),
                _text(backorder_max),
                k.stock_prefix,
            ],
        )
        verdict = reply[0]
        if verdict == "nolocation":
            raise domain.UnknownLocation(location)
        if verdict == "unknown":
            raise domain.UnknownSku([sku])
        before, reserved, version, safety, backorder = (int(x) for x in reply[1:6])
        wanted_safety = safety if safety_stock is None else safety_stock
        wanted_allowance = backorder if backorder_max is None else backorder_max
        as_row = StockLevel(sku, before, reserved, version, wanted_safety, None, wanted_allowance)
        if verdict in ("changed", "below"):
            domain.check_on_hand_change(as_row, on_hand, expected_on_hand)  # raises
        if verdict == "cut":
            domain.check_backorder_cut(
                as_row, domain.Policy(wanted_safety, wanted_allowance, None, None)
            )  # raises
        if verdict != "ok":
            raise AssertionError(f"set_location.lua refused what the domain allows: {reply!r}")

    async def set_policy(
        self,
        sku: str,
        policy: domain.Policy,
        expected: domain.Policy | None,
        counts: Mapping[str, int],
    ) -> tuple[int, int | None, int]:
        """Writes the fields reserve.lua decides with (safety stock, cap, backorder
        allowance) if they are still ``expected``'s; ``counts`` (customer -> units, from
        SQL) start the SKU's customer counts when its cap is newly set. An allowance cut
        below the units held beyond on_hand is refused (``BelowReserved``, decided in the
        script: docs/design.md#backorders). Returns the fields as they were."""
        k = self.keys
        expected_text = (
            ""
            if expected is None
            else f"{expected.safety_stock}\t{_text(expected.customer_max)}"
            f"\t{expected.backorder_max}"
        )
        flat = [value for customer, units in counts.items() for value in (customer, str(units))]
        reply = await self._run(
            "policy",
            [k.loaded, k.stock(sku)],
            [
                sku,
                k.stock_prefix,
                expected_text,
                str(policy.safety_stock),
                _text(policy.customer_max),
                str(policy.backorder_max),
                *flat,
            ],
        )
        if reply[0] == "unknown":
            raise domain.UnknownSku([sku])
        before = (int(reply[1]), None if reply[2] == "" else int(reply[2]), int(reply[3]))
        if reply[0] == "changed":
            raise domain.PolicyChanged(sku, before)
        if reply[0] == "below":
            level = StockLevel(
                sku,
                int(reply[4]),
                int(reply[5]),
                0,
                before[0],
                before[1],
                before[2],
            )
            domain.check_backorder_cut(level, policy)  # raises: the script's verdict
            raise AssertionError(f"policy.lua refused a cut the domain allows: {reply!r}")
        return before

    async def adjust(self, sku: str, delta: int, reason: str) -> StockLevel:
        k = self.keys
        reply = await self._run(
            "adjust",
            [k.loaded, k.stock(sku), k.events],
            [sku, str(delta), reason, str(domain.ON_HAND_MAX)],
        )
        if reply[0] == "unknown":
            raise domain.UnknownSku([sku])
        level = level_from(sku, reply[1:7])
        if reply[0] == "below":
            raise domain.BelowReserved(level, int(reply[7]))
        if reply[0] == "too-much":
            raise domain.InvalidInput("on_hand", f"must be at most {domain.ON_HAND_MAX}")
        return level

    async def create_product(self, payload: str, variants: Sequence[tuple[str, int]]) -> StreamId:
        """Creates every variant's SKU or none; returns the event to wait for in SQL."""
        k = self.keys
        args = [k.stock_prefix, payload]
        for sku, on_hand in variants:
            args += [sku, str(on_hand)]
        reply = await self._run("create_product", [k.loaded, k.skus, k.events], args)
        if reply[0] == "taken":
            raise domain.DuplicateSku(reply[1])
        return StreamId.parse(reply[1])

    async def newest_event(self) -> StreamId | None:
        async with unavailable_on_error("newest event"):
            newest = await self.client.xrevrange(self.keys.events, "+", "-", count=1)
        return StreamId.parse(str(newest[0][0])) if newest else None


def replay_or_conflict(earlier: Reservation, request: ReserveRequest) -> ReserveOutcome:
    """``domain.replay_or_conflict``, raising the conflict (reserve.lua answered 'known')."""
    answer = domain.replay_or_conflict(earlier, request)
    if isinstance(answer, domain.IdempotencyConflict):
        raise answer
    return answer


def _places(fields: Mapping[str, str]) -> dict[str, Location]:
    """``KeyLayout.locations`` as locations (the name is not kept in Redis: the code)."""
    found: dict[str, Location] = {}
    for code, text in fields.items():
        priority, active, _rank = text.split(" ")
        found[code] = Location(code, code, int(priority), active == "1")
    return found


def _located_level(sku: str, code: str, text: str) -> LocationLevel:
    """A field of ``KeyLayout.located`` (the Lua ``encode_level``) as a level."""
    on_hand, reserved, version, safety, backorder = (int(x) for x in text.split(" "))
    return LocationLevel(sku, code, on_hand, reserved, version, safety, backorder)


def _text(value: int | None) -> str:
    return "" if value is None else str(value)
