"""A lease in Redis: at most one holder at a time, across processes, until it lapses.

The persister holds one (stream events must be applied in order by one writer) and each
queue partition has one (FIFO needs one consumer). A holder renews well before the lease
lapses; one that stalls past it loses the lease and must stop, and the work it may still
finish is made harmless elsewhere (stream positions in SQL, idempotent order ids).
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from stockguard.stores.redis.scripts import script

LEASE_MS_DEFAULT = 10_000


class Lease:
    def __init__(self, client: Redis, key: str, lease_ms: int = LEASE_MS_DEFAULT) -> None:
        assert 100 <= lease_ms <= 600_000
        self.client = client
        self.key = key
        self.lease_ms = lease_ms
        self.token = uuid.uuid4().hex
        self.held = False

    async def hold(self) -> bool:
        """Takes the lease if free, renews it if ours; False if another process holds it."""
        self.held = bool(
            await script("lease")(self.client, [self.key], [self.token, str(self.lease_ms)])
        )
        return self.held

    async def release(self) -> None:
        if self.held:
            self.held = False
            await script("delete_if")(self.client, [self.key], [self.token])
