"""The tables. The stock rule is enforced by the schema itself, not only by the code.

Times are integer milliseconds since the Unix epoch, read from the database's clock
(``Backend.now_ms``): one clock decides expiry, whatever the client's clock says, and
integers compare the same way on every backend.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

from stockguard import domain

metadata = MetaData()

# MariaDB compares strings case-insensitively and ignores trailing spaces by default;
# SKU codes and order ids are exact byte strings everywhere.
_MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
    "mysql_engine": "InnoDB",
}

# An auto-increment key that SQLite accepts (it only auto-increments INTEGER PRIMARY KEY).
SeqKey = BigInteger().with_variant(Integer(), "sqlite")

stock_levels = Table(
    "stock_levels",
    metadata,
    Column("sku", String(domain.SKU_LEN_MAX), primary_key=True),
    Column("on_hand", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False, default=0),
    Column("version", BigInteger, nullable=False, default=0),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("low_stock_threshold", BigInteger, nullable=True),
    # The stock policy (docs/design.md#stock-policy), read with the level it governs.
    Column("safety_stock", BigInteger, nullable=False, default=0, server_default="0"),
    Column("backorder_max", BigInteger, nullable=False, default=0, server_default="0"),
    Column("customer_max", BigInteger, nullable=True),
    # Stocked at other locations too (docs/locations.md#model): this row is then only the
    # default location's level, and holds go through the allocation policy.
    Column("located", Boolean, nullable=False, default=False, server_default=false()),
    # I1 (docs/design.md#backorders): on_hand goes below 0 only by what the shop allowed.
    CheckConstraint(
        "reserved >= 0 AND reserved <= on_hand + backorder_max AND backorder_max >= 0",
        name="ck_stock_never_oversold",
    ),
    CheckConstraint(f"on_hand <= {domain.ON_HAND_MAX}", name="ck_stock_on_hand_max"),
    **_MYSQL,
)

products = Table(
    "products",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(domain.PRODUCT_NAME_LEN_MAX), nullable=False),
    Column("options_json", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    **_MYSQL,
)

product_variants = Table(
    "product_variants",
    metadata,
    Column("sku", String(domain.SKU_LEN_MAX), ForeignKey("stock_levels.sku"), primary_key=True),
    Column("product_id", String(36), ForeignKey("products.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("options_json", Text, nullable=False),
    Index("ix_product_variants_product", "product_id", "position"),
    **_MYSQL,
)

reservations = Table(
    "reservations",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("order_id", String(domain.ORDER_ID_LEN_MAX), nullable=False, unique=True),
    Column("customer_id", String(domain.CUSTOMER_ID_LEN_MAX), nullable=True),
    Column("status", String(16), nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("ended_at_ms", BigInteger, nullable=True),
    CheckConstraint(
        "status IN ('held', 'confirmed', 'released', 'expired')", name="ck_reservation_status"
    ),
    Index("ix_reservations_due", "status", "expires_at_ms"),
    Index("ix_reservations_customer", "customer_id"),
    **_MYSQL,
)

reservation_lines = Table(
    "reservation_lines",
    metadata,
    Column("reservation_id", String(36), ForeignKey("reservations.id"), primary_key=True),
    Column("sku", String(domain.SKU_LEN_MAX), ForeignKey("stock_levels.sku"), primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    # Units of the line held beyond the physical stock (docs/design.md#backorders).
    Column("backordered", BigInteger, nullable=False, default=0, server_default="0"),
    # Its allocations are in reservation_allocations (docs/locations.md#model).
    Column("allocated", Boolean, nullable=False, default=False, server_default=false()),
    CheckConstraint("quantity > 0", name="ck_line_quantity_positive"),
    Index("ix_reservation_lines_sku", "sku"),
    **_MYSQL,
)

stock_movements = Table(
    "stock_movements",
    metadata,
    Column("seq", SeqKey, primary_key=True, autoincrement=True),
    Column("sku", String(domain.SKU_LEN_MAX), ForeignKey("stock_levels.sku"), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("delta", BigInteger, nullable=False),
    Column("on_hand_after", BigInteger, nullable=False),
    Column("reason", String(domain.REASON_LEN_MAX), nullable=False),
    Column("reservation_id", String(36), nullable=True),
    # Where the units moved (docs/locations.md#invariants: I3 per location).
    Column(
        "location",
        String(domain.SKU_LEN_MAX),
        nullable=False,
        default=domain.DEFAULT_LOCATION_CODE,
        server_default=domain.DEFAULT_LOCATION_CODE,
    ),
    Index("ix_stock_movements_sku", "sku", "seq"),
    **_MYSQL,
)

# Locations (docs/locations.md): warehouses and stores. ``default`` always exists: its
# level of a SKU is the SKU's ``stock_levels`` row, so a shop that never names a location
# runs exactly as before.
locations = Table(
    "locations",
    metadata,
    Column("code", String(domain.SKU_LEN_MAX), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("priority", BigInteger, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    **_MYSQL,
)

# A SKU's level at a location other than ``default``, with I1 of its own.
location_levels = Table(
    "location_levels",
    metadata,
    Column("sku", String(domain.SKU_LEN_MAX), ForeignKey("stock_levels.sku"), primary_key=True),
    Column("location", String(domain.SKU_LEN_MAX), ForeignKey("locations.code"), primary_key=True),
    Column("on_hand", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("safety_stock", BigInteger, nullable=False, default=0, server_default="0"),
    Column("backorder_max", BigInteger, nullable=False, default=0, server_default="0"),
    Column("updated_at_ms", BigInteger, nullable=False),
    CheckConstraint(
        "reserved >= 0 AND reserved <= on_hand + backorder_max AND backorder_max >= 0",
        name="ck_location_never_oversold",
    ),
    CheckConstraint(f"on_hand <= {domain.ON_HAND_MAX}", name="ck_location_on_hand_max"),
    **_MYSQL,
)

# Where a located SKU's held line drew its units (docs/locations.md#model): confirm, release
# and expiry settle exactly these. A line with no rows here was held wholly at ``default``
# (``reservation_lines.allocated`` says which, so a read needs no look-up otherwise).
reservation_allocations = Table(
    "reservation_allocations",
    metadata,
    Column("reservation_id", String(36), ForeignKey("reservations.id"), primary_key=True),
    Column("sku", String(domain.SKU_LEN_MAX), primary_key=True),
    Column("location", String(domain.SKU_LEN_MAX), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("backordered", BigInteger, nullable=False),
    CheckConstraint("quantity > 0", name="ck_allocation_quantity_positive"),
    Index("ix_reservation_allocations_location", "sku", "location"),
    **_MYSQL,
)

DEFAULT_LOCATION_ROW = {
    "code": domain.DEFAULT_LOCATION_CODE,
    "name": "Default",
    "priority": 0,
    "active": True,
    "created_at_ms": 0,
}
"""The row migration 0009 inserts: it always exists (docs/locations.md#model). A tool
that empties every table (the tests) puts it back."""

redis_offsets = Table(
    "redis_offsets",
    metadata,
    Column("stream", String(200), primary_key=True),
    Column("epoch", String(36), nullable=False),
    Column("last_id", String(48), nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    **_MYSQL,
)
"""The redis strategy's persister position: the last stream entry written into these
tables, updated in the same transaction as the rows it wrote (a replayed entry is
skipped), and the epoch of the Redis load it belongs to (a stale persister is fenced)."""

# Sharded strategy (docs/design.md#sharded): a SKU's stock split over bucket rows so that buyers of
# one hot SKU lock different rows. A SKU's stock is its stock_levels row PLUS the sum of
# its buckets; the stock rule holds per bucket, so it holds for the sum.
stock_buckets = Table(
    "stock_buckets",
    metadata,
    Column("sku", String(domain.SKU_LEN_MAX), ForeignKey("stock_levels.sku"), primary_key=True),
    Column("bucket", Integer, primary_key=True, autoincrement=False),
    Column("on_hand", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="ck_bucket_never_oversold"),
    **_MYSQL,
)

# Which buckets a held line took its units from: release, confirm and expiry give them back
# to exactly those buckets. A line with no rows here was held on its stock_levels row.
reservation_buckets = Table(
    "reservation_buckets",
    metadata,
    Column("reservation_id", String(36), ForeignKey("reservations.id"), primary_key=True),
    Column("sku", String(domain.SKU_LEN_MAX), primary_key=True),
    Column("bucket", Integer, primary_key=True, autoincrement=False),
    Column("quantity", BigInteger, nullable=False),
    CheckConstraint("quantity > 0", name="ck_reservation_bucket_quantity_positive"),
    **_MYSQL,
)

# The transactional outbox (docs/events.md): events are inserted by the transaction that
# makes the change, so one exists exactly when its change committed. ``row_id`` is insert
# order; ``seq`` is the public event id, given by the relay (one per database, under a
# lease) in ``row_id`` order to rows it can see: a transaction that took its row_id early
# but commits late still gets a seq above every seq already handed out, so a reader that
# pages by ``seq`` never skips an event.
stock_events = Table(
    "stock_events",
    metadata,
    Column("row_id", SeqKey, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=True, unique=True),
    Column("type", String(32), nullable=False),
    Column("sku", String(domain.SKU_LEN_MAX), nullable=True),
    Column("reservation_id", String(36), nullable=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_stock_events_sku", "sku", "row_id"),
    **_MYSQL,
)

# The relay (docs/events.md#the-relay): one lease row per database names the process that
# may sequence and deliver; ``token`` goes up at every change of holder and fences every
# write the relay makes (a relay that lost the lease cannot move a cursor or number a row).
event_leases = Table(
    "event_leases",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    **_MYSQL,
)

# Where each sink is in the outbox: the last seq it has delivered (or dead-lettered), and
# the retry state of its head event. ``sink``: ``nats`` or ``webhook:<endpoint id>``.
event_cursors = Table(
    "event_cursors",
    metadata,
    Column("sink", String(80), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at_ms", BigInteger, nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("updated_at_ms", BigInteger, nullable=False),
    **_MYSQL,
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("secret", String(128), nullable=False),
    Column("types", String(400), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("description", String(200), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    **_MYSQL,
)

# Recent delivery attempts, newest kept: the relay prunes it to a bounded count.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", SeqKey, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(36), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(300), nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    **_MYSQL,
)

# Events an endpoint refused ``attempts_max`` times: kept with their envelope (the outbox
# may prune the event) until redelivered or past the retention.
webhook_dead_letters = Table(
    "webhook_dead_letters",
    metadata,
    Column("endpoint_id", String(36), primary_key=True),
    Column("event_id", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(300), nullable=True),
    Column("dead_at_ms", BigInteger, nullable=False),
    **_MYSQL,
)

# Kits (docs/design.md#kits): a kit SKU has no stock row of its own; reserving it holds its
# components. Definitions are never changed once written.
kit_components = Table(
    "kit_components",
    metadata,
    Column("kit_sku", String(domain.SKU_LEN_MAX), primary_key=True),
    Column(
        "component_sku",
        String(domain.SKU_LEN_MAX),
        ForeignKey("stock_levels.sku"),
        primary_key=True,
    ),
    Column("quantity", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    CheckConstraint("quantity > 0", name="ck_kit_component_quantity_positive"),
    **_MYSQL,
)

ALL_TABLES = (
    reservation_allocations,
    location_levels,
    locations,
    kit_components,
    webhook_dead_letters,
    webhook_deliveries,
    webhook_endpoints,
    event_cursors,
    event_leases,
    stock_events,
    reservation_buckets,
    stock_buckets,
    redis_offsets,
    stock_movements,
    reservation_lines,
    reservations,
    product_variants,
    products,
    stock_levels,
)
"""Children before parents: the order in which rows can be deleted."""
