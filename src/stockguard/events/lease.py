"""A lease in the database: at most one relay works per database, across processes and hosts.

Why in the database and not in Redis: the outbox, the cursors and the lease then live and
fail together, and a shop without Redis has a relay too. One row per lease name holds the
holder, an expiry on the database's clock (no host's clock matters) and a fencing
``token`` that goes up each time the lease changes hands.

Every write the relay makes (numbering outbox rows, moving a cursor, recording a dead
letter) runs ``fence`` first, in the same transaction: an ``UPDATE`` of the lease row
that matches only while our token is current. That row lock also makes a takeover wait
for the holder's open transaction, so a relay that was paused past its expiry (GC,
SIGSTOP, a VM migration) and wakes up finds its token gone and writes nothing: it may
still POST an event it was sending (a duplicate, which at-least-once allows) but can never
renumber an event or move a cursor backwards.
"""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import insert, select, update

from stockguard.stores.contract import DuplicateKey
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.store import SqlStore
from stockguard.stores.sql.tx import Tx

RELAY_LEASE = "relay"
LEASE_S_DEFAULT = 5.0
_c = t.event_leases.c


class LeaseLost(Exception):
    """Another relay holds the lease now: this one must stop writing."""


def holder_name() -> str:
    """Who holds a lease, as an operator reads it: host, pid and a random part (two
    relays in one process, as the tests run them, are still two holders)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, store: SqlStore, lease_s: float = LEASE_S_DEFAULT, name: str = RELAY_LEASE):
        assert 0.5 <= lease_s <= 600
        self.store = store
        self.name = name
        self.lease_ms = int(lease_s * 1000)
        self.holder = holder_name()
        self.token: int | None = None
        """Our fencing token while we hold the lease, else None."""

    @property
    def held(self) -> bool:
        return self.token is not None

    async def acquire(self) -> bool:
        """Takes the lease if it is free or lapsed, renews it if ours; True if ours now."""
        for _ in range(2):  # a missing row is inserted once; a racing insert loses here
            try:
                return await self.store.run(self._acquire)
            except DuplicateKey:
                continue
        return False

    async def _acquire(self) -> bool:
        async with self.store.transaction() as tx:
            now = await tx.now_ms()
            row = (
                await tx.connection.execute(
                    select(_c.holder, _c.token, _c.expires_at_ms)
                    .where(_c.name == self.name)
                    .with_for_update()
                )
            ).first()
            if row is None:
                await tx.connection.execute(
                    insert(t.event_leases).values(
                        name=self.name,
                        holder=self.holder,
                        token=1,
                        expires_at_ms=now + self.lease_ms,
                    )
                )
                await tx.commit()
                self.token = 1
                return True
            ours = row.holder == self.holder and row.token == self.token
            if not ours and row.expires_at_ms > now:
                self.token = None
                return False
            token = int(row.token) if ours else int(row.token) + 1
            await tx.connection.execute(
                update(t.event_leases)
                .where(_c.name == self.name)
                .values(holder=self.holder, token=token, expires_at_ms=now + self.lease_ms)
            )
            await tx.commit()
            self.token = token
            return True

    async def fence(self, tx: Tx) -> None:
        """Renews the lease inside ``tx`` if it is still ours, else raises ``LeaseLost``
        (the caller's transaction then rolls back: nothing of it is written)."""
        if self.token is None:
            raise LeaseLost(self.name)
        result = await tx.connection.execute(
            update(t.event_leases)
            .where(_c.name == self.name, _c.holder == self.holder, _c.token == self.token)
            .values(expires_at_ms=tx.backend.now_ms() + self.lease_ms)
        )
        if result.rowcount != 1:
            self.token = None
            raise LeaseLost(self.name)

    async def release(self) -> None:
        """Lets the next relay take over at once instead of after the expiry."""
        if self.token is None:
            return
        token, self.token = self.token, None
        async with self.store.transaction() as tx:
            await tx.connection.execute(
                update(t.event_leases)
                .where(_c.name == self.name, _c.holder == self.holder, _c.token == token)
                .values(expires_at_ms=0)
            )
            await tx.commit()


async def lease_holder(store: SqlStore, name: str = RELAY_LEASE) -> tuple[str, int, int] | None:
    """(holder, token, expires_at_ms) of a lease, for the admin page and tests."""
    async with store.transaction(read_only=True) as tx:
        row = (
            await tx.connection.execute(
                select(_c.holder, _c.token, _c.expires_at_ms).where(_c.name == name)
            )
        ).first()
    return None if row is None else (str(row.holder), int(row.token), int(row.expires_at_ms))
