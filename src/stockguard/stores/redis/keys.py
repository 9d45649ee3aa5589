"""Every Redis key stockguard uses, in one place.

All keys of one keyspace share the hash tag ``{prefix}``. A Lua script on Redis Cluster
may only touch keys of one slot, and a reservation script touches the stock key of every
line, the order index, the due index and the event stream at once; so everything one
script can touch must share the tag. One keyspace is therefore one slot: a shop that
needs more than one Cluster node of throughput runs one keyspace (prefix) per SKU group,
each with its own stream and persister. On a single Redis the tag costs nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stockguard import domain

PREFIX_DEFAULT = "stockguard"
PREFIX_LEN_MAX = 64
_PREFIX_FORBIDDEN = re.compile(r"[\x00-\x20\x7f{}]")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def default_prefix() -> str:
    """The keyspace a strategy uses when its caller names none. Configuration is read by
    the faces (``Settings.redis_prefix``, ``--prefix`` / ``STOCKGUARD_REDIS_PREFIX``),
    which pass the prefix down, so ``serve``, ``reconcile`` and ``persist`` agree."""
    return PREFIX_DEFAULT


def validate_prefix(prefix: object) -> str:
    """A prefix is 1-64 visible characters without braces (they would break the tag)."""
    if not isinstance(prefix, str) or not 1 <= len(prefix) <= PREFIX_LEN_MAX:
        raise domain.InvalidInput("key_prefix", f"must be 1-{PREFIX_LEN_MAX} characters")
    if _PREFIX_FORBIDDEN.search(prefix):
        raise domain.InvalidInput("key_prefix", "must not contain spaces, braces or controls")
    return prefix


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str = PREFIX_DEFAULT

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    # -------------------------------------------------------------- the redis strategy

    @property
    def loaded(self) -> str:
        """The load marker: present (holding the load's epoch) once Redis mirrors SQL.

        Every script refuses to act while it is absent, so an emptied Redis never sells.
        """
        return f"{self.tag}:loaded"

    @property
    def loading(self) -> str:
        """Lock held by the one process loading this keyspace from SQL."""
        return f"{self.tag}:loading"

    @property
    def stock_prefix(self) -> str:
        return f"{self.tag}:s:"

    def stock(self, sku: str) -> str:
        """Hash ``on_hand``, ``reserved``, ``version`` of one SKU, and the policy fields
        reserve.lua decides with where the SKU has them: ``safety``, ``cap``,
        ``backorder`` (docs/design.md#stock-policy, docs/design.md#backorders)."""
        return self.stock_prefix + sku

    def located(self, sku: str) -> str:
        """Hash location code -> that location's level of a located SKU
        (docs/locations.md), for every location other than the default one (whose level
        is the stock hash): ``on_hand reserved version safety backorder`` as one
        space-separated value, so one HGETALL reads every level of the SKU. Exists only
        while the stock hash says ``located`` (the Lua ``located_key`` builds the name)."""
        return f"{self.tag}:ls:{sku}"

    @property
    def locations(self) -> str:
        """Hash location code -> ``priority active rank``: what the allocation in
        reserve.lua needs of every location (rank: the code's place in code order, so
        Lua breaks ties without comparing strings). Rewritten whole on every change."""
        return f"{self.tag}:locations"

    def customers(self, sku: str) -> str:
        """Hash customer_id -> units held or bought of a SKU with a per-customer cap
        (kept only while the cap is; the Lua ``customers_key`` builds the same name)."""
        return f"{self.tag}:cu:{sku}"

    @property
    def skus(self) -> str:
        """Set of every SKU in this keyspace (reconcile reads it in one atomic step)."""
        return f"{self.tag}:skus"

    @property
    def reservation_prefix(self) -> str:
        return f"{self.tag}:r:"

    def reservation(self, reservation_id: str) -> str:
        """Hash of one reservation; kept ``ended_retention`` after it ends, then dropped."""
        return self.reservation_prefix + reservation_id

    def order(self, order_id: str) -> str:
        """order_id → reservation id, kept for good: idempotency must not expire."""
        return f"{self.tag}:o:{order_id}"

    @property
    def due(self) -> str:
        """Sorted set of held reservation ids scored by expiry (epoch ms, Redis clock)."""
        return f"{self.tag}:due"

    @property
    def events(self) -> str:
        """Stream of every change, in the order Redis applied them; the persister's input."""
        return f"{self.tag}:events"

    @property
    def dead(self) -> str:
        """Stream of events the persister could not apply (poison), for a human to read."""
        return f"{self.tag}:dead"

    @property
    def persister_lease(self) -> str:
        """Held by the one persister applying the stream (events must apply in order)."""
        return f"{self.tag}:persister"

    # -------------------------------------------------------------- the queue strategy

    def queue(self, partition: int) -> str:
        """Stream of reservation requests of one partition, consumed in FIFO order."""
        return f"{self.tag}:q:{partition}"

    def queue_lease(self, partition: int) -> str:
        """Held by the one worker consuming a partition, across every process."""
        return f"{self.tag}:q:{partition}:lease"

    def inbox(self, process_id: str) -> str:
        """List of one process's answers (each names its request); one reader drains it."""
        return f"{self.tag}:inbox:{process_id}"

    # -------------------------------------------------------------- housekeeping

    def match(self, suffix: str) -> str:
        """SCAN pattern ``<tag><suffix>``: the tag's glob characters escaped, not the suffix's."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.tag) + suffix

    @property
    def match_all(self) -> str:
        """SCAN pattern matching exactly this keyspace's keys."""
        return self.match(":*")

    @property
    def strategy_patterns(self) -> tuple[str, ...]:
        """SCAN patterns of the redis strategy's per-SKU/order/reservation keys."""
        return tuple(self.match(s) for s in (":s:*", ":r:*", ":o:*", ":cu:*", ":ls:*"))

    @property
    def strategy_singletons(self) -> tuple[str, ...]:
        """The redis strategy's other keys. With ``strategy_patterns``: what a load from
        SQL replaces (not the dead-letter stream, kept for a human; not the load lock)."""
        return (
            self.skus,
            self.due,
            self.events,
            self.persister_lease,
            self.loaded,
            self.locations,
        )


PERSIST_GROUP = "persister"
"""Consumer group (and its one consumer) that reads the event stream."""
QUEUE_GROUP = "workers"
"""Consumer group of the queue partitions; one consumer per partition, the lease holder."""
