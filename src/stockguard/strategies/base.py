"""The one small interface every strategy implements.

A strategy decides how concurrent *holds* on the same stock are serialised. Everything
else (confirm, release, expiry, admin edits, reads) defaults to the SQL store's shared,
strategy-independent operations; a strategy that keeps stock elsewhere (buckets, Redis)
overrides those too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

from stockguard import domain
from stockguard.domain import (
    Line,
    Product,
    ProductSpec,
    Reservation,
    ReserveOutcome,
    ReserveRequest,
    StockLevel,
)
from stockguard.domain.locations import Location
from stockguard.stores.contract import Store

REFUSALS = (domain.OutOfStock, domain.UnknownSku, domain.CustomerLimit, domain.InvalidInput)
"""What a hold's own decision refuses with; each may still be the replay of a granted
request (its own units count against a cap), so ``Strategy.refused`` looks first."""


class Strategy:
    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    """Infrastructure beyond the SQL database ("redis"); Engine.open passes its URL."""
    write_behind: ClassVar[bool] = False
    """Answers before the reservation is in the SQL tables (a persister writes it later).
    Admission's sold-out fast path checks replays in SQL, so it is off for these."""
    memory: ClassVar[bool] = True
    """Runs on any store of the contract (``stores/contract.py``), the in-memory one too;
    False for strategies that need SQL tables of their own (buckets) or Redis."""
    burst_in_flight: int | None = None
    """How many reservations a batching strategy takes at once to good use (one batch):
    admission always lets that many in, at a cold start and whatever pace it last
    measured. None for one transaction per request (admission's own defaults)."""

    def __init__(self, store: Store, **options: Any) -> None:
        if options:
            raise TypeError(f"strategy {self.name!r} takes no options {sorted(options)}")
        self.store = store
        self.counters: Counter[str] = Counter()
        """Events worth exporting as metrics (retries, batches…), by name."""

    async def start(self) -> None:
        """Starts background tasks the strategy needs (writers, persisters)."""

    async def close(self) -> None:
        """Stops background tasks after answering everything already accepted."""

    async def ping(self) -> None:
        """Raises StoreUnavailable when infrastructure beyond the SQL database (Redis)
        cannot answer; the engine pings the SQL database itself."""

    async def settle(self) -> None:
        """Waits until every write answered so far is in the SQL tables.

        Immediate for strategies that answer only after their SQL commit; a write-behind
        strategy (redis) waits for its persister. Callers that read the tables directly
        (audits, the contract suite, the benchmark) await this first.
        """

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        raise NotImplementedError

    async def refused(
        self, request: ReserveRequest, error: domain.StockguardError
    ) -> ReserveOutcome:
        """A request the stock refused may still be the replay of one that was granted."""
        async with self.store.transaction(read_only=True) as tx:
            replay = await self.store.replay(tx, request)
        if replay is not None:
            return replay
        raise error

    async def confirm(self, reservation_id: str) -> Reservation:
        return await self.store.confirm(reservation_id)

    async def release(self, reservation_id: str) -> Reservation:
        return await self.store.release(reservation_id)

    async def extend(self, reservation_id: str, ttl_s: int) -> Reservation:
        """Moves a held reservation's expiry later (``domain.extension``). The store's
        shared transaction locks the reservation row, which is all any SQL strategy's
        confirm, release and sweep serialise on, so it is right for each of them."""
        return await self.store.extend(reservation_id, ttl_s)

    async def release_part(self, reservation_id: str, lines: Sequence[Line]) -> Reservation:
        """Gives back ``lines`` of a held reservation, the rest stays held
        (``domain.release_part``); on the locked reservation row, like ``extend``."""
        return await self.store.release_part(reservation_id, lines)

    async def expire_due(self) -> int:
        return await self.store.expire_due()

    async def get_reservation(self, reservation_id: str) -> Reservation:
        return await self.store.get_reservation(reservation_id)

    async def stock(self, skus: Sequence[str]) -> list[StockLevel]:
        return await self.store.stock(skus)

    async def set_on_hand(self, sku: str, on_hand: int, expected_on_hand: int | None) -> StockLevel:
        return await self.store.set_on_hand(sku, on_hand, expected_on_hand)

    async def adjust(self, sku: str, delta: int, reason: str) -> StockLevel:
        return await self.store.adjust(sku, delta, reason)

    async def get_policy(self, sku: str) -> domain.Policy:
        return await self.store.get_policy(sku)

    async def set_policy(
        self, sku: str, policy: domain.Policy, expected: domain.Policy | None
    ) -> domain.Policy:
        """The store's compare-and-set; a strategy that keeps stock elsewhere (Redis,
        buckets) overrides it so its copy follows the policy too."""
        return await self.store.set_policy(sku, policy, expected)

    async def create_product(self, spec: ProductSpec) -> Product:
        return await self.store.create_product(spec)

    # locations (docs/locations.md): through the strategy, so one that keeps stock
    # elsewhere (Redis, buckets) follows every change of a location or of its stock.
    async def list_locations(self) -> list[Location]:
        return await self.store.list_locations()

    async def create_location(self, location: Location) -> Location:
        return await self.store.create_location(location)

    async def update_location(
        self,
        code: str,
        *,
        name: str | None = None,
        priority: int | None = None,
        active: bool | None = None,
    ) -> Location:
        return await self.store.update_location(code, name=name, priority=priority, active=active)

    async def set_location_stock(
        self,
        sku: str,
        location: str,
        on_hand: int,
        expected_on_hand: int | None = None,
        safety_stock: int | None = None,
        backorder_max: int | None = None,
    ) -> StockLevel:
        return await self.store.set_location_stock(
            sku, location, on_hand, expected_on_hand, safety_stock, backorder_max
        )
