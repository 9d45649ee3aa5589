"""What strategies and the engine need from storage: the store contract.

Two stores implement it: ``stores.sql.store.SqlStore`` (SQLite, PostgreSQL, MariaDB) and
``stores.memory.MemoryStore`` (in process, for fast tests). Strategies are written against
the transaction API (``StoreTx``: one method per statement, no decisions; the decisions are
``stockguard.domain``'s), so a store that implements it runs every strategy that needs
nothing else (conditional, pessimistic, optimistic, coalescing). The contract suite runs
against both (tests/test_contract.py), so they cannot drift apart.

Semantics every implementation keeps (docs/design.md#invariants):

* a transaction commits only when its body calls ``commit()``; otherwise nothing it wrote
  is seen by anyone (rollback);
* ``levels(…, lock=True)``, ``reservation(…, lock=True)`` and ``reservations_by_id(…,
  lock=True)`` serialise the transactions that touch those rows until commit;
* ``reserved`` never leaves ``0..on_hand`` (I1: the store refuses the write);
* a second reservation with a stored order_id raises ``DuplicateKey`` (the unique index),
  as does a second stock row for one SKU;
* ``now_ms()`` is the store's clock, integer epoch milliseconds; expiry uses nothing else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from stockguard.domain import (
    Line,
    Movement,
    Product,
    ProductSpec,
    Reservation,
    ReserveOutcome,
    ReserveRequest,
    Status,
    StockguardError,
    StockLevel,
)

T = TypeVar("T")


class DuplicateKey(Exception):
    """A unique key already existed; the transaction was rolled back."""


class RetryableConflict(Exception):
    """The database rolled the transaction back to break a deadlock; run it again."""


class StoreTx(Protocol):
    """One open transaction: the statements a strategy composes (``stores/sql/tx.py``)."""

    async def commit(self) -> None: ...
    async def now_ms(self) -> int: ...

    # stock
    async def levels(self, skus: Sequence[str], *, lock: bool = False) -> dict[str, StockLevel]: ...
    async def add_reserved_if_available(self, sku: str, quantity: int, now_ms: int) -> bool: ...
    async def write_reserved_if_version(
        self, level: StockLevel, reserved_new: int, now_ms: int
    ) -> bool: ...
    async def add_reserved(self, deltas: Mapping[str, int], now_ms: int) -> None: ...
    async def move_levels(self, deltas: Mapping[str, tuple[int, int]], now_ms: int) -> None: ...
    async def sell(self, lines: Sequence[Line], reservation_id: str, now_ms: int) -> None: ...
    async def write_on_hand(self, sku: str, on_hand: int, now_ms: int) -> None: ...
    async def insert_levels(self, on_hand_by_sku: Mapping[str, int], now_ms: int) -> None: ...
    async def record_movements(self, movements: Sequence[Movement]) -> None: ...
    async def existing_skus(self, skus: Sequence[str]) -> set[str]: ...

    # reservations
    async def insert_reservations(self, reservations: Sequence[Reservation]) -> None: ...
    async def reservation(
        self, reservation_id: str, *, lock: bool = False
    ) -> Reservation | None: ...
    async def reservation_by_order(self, order_id: str) -> Reservation | None: ...
    async def reservations_by_order(self, order_ids: Sequence[str]) -> dict[str, Reservation]: ...
    async def reservations_by_id(
        self, reservation_ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, Reservation]: ...
    async def due_reservation_ids(self, now_ms: int, limit: int) -> list[str]: ...
    async def end_reservations(self, ids: Sequence[str], status: Status, now_ms: int) -> int: ...
    async def end_each(self, ended: Mapping[str, Status], now_ms: int) -> int: ...
    async def held_quantity_by_sku(self, ids: Sequence[str]) -> dict[str, int]: ...

    # products
    async def insert_product(
        self,
        product_id: str,
        name: str,
        options: Mapping[str, Sequence[str]],
        variants: Sequence[tuple[str, Mapping[str, str]]],
        now_ms: int,
    ) -> None: ...
    async def product_rows(
        self, product_id: str
    ) -> tuple[str, dict[str, tuple[str, ...]], list[tuple[str, dict[str, str]]]] | None: ...


class Store(Protocol):
    """A store: transactions, the shared use cases, and the admin read queries."""

    counters: Counter[str]

    def transaction(self, *, read_only: bool = False) -> AbstractAsyncContextManager[StoreTx]: ...
    async def run(self, work: Callable[[], Awaitable[T]]) -> T: ...
    def new_id(self) -> str: ...
    async def migrate(self) -> None: ...
    async def close(self) -> None: ...

    # use cases (stores/operations.py)
    async def replay(self, tx: StoreTx, request: ReserveRequest) -> ReserveOutcome | None: ...
    async def replay_after_duplicate(self, request: ReserveRequest) -> ReserveOutcome: ...
    async def out_of_stock(self, request: ReserveRequest) -> StockguardError: ...
    async def confirm(self, reservation_id: str) -> Reservation: ...
    async def release(self, reservation_id: str) -> Reservation: ...
    async def expire_due(self, limit: int = ...) -> int: ...
    async def get_reservation(self, reservation_id: str) -> Reservation: ...
    async def stock(self, skus: Sequence[str]) -> list[StockLevel]: ...
    async def set_on_hand(
        self, sku: str, on_hand: int, expected_on_hand: int | None = None
    ) -> StockLevel: ...
    async def adjust(self, sku: str, delta: int, reason: str) -> StockLevel: ...
    async def create_product(self, spec: ProductSpec) -> Product: ...
    async def get_product(self, product_id: str) -> Product: ...

    # read queries for listings
    async def list_reservations(
        self,
        *,
        status: Status | None = None,
        sku: str | None = None,
        order_id: str | None = None,
        customer_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Reservation], str | None]: ...
    async def list_stock(
        self, *, prefix: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[StockLevel], str | None]: ...
    async def movements(
        self, sku: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Movement], str | None]: ...
    async def list_products(
        self, *, search: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Product]: ...
    async def list_standalone_stock(
        self, *, search: str | None = None, limit: int = 100
    ) -> list[StockLevel]: ...
