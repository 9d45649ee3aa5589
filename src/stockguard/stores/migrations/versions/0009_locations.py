"""Stock per location (docs/locations.md#migration).

The default location's level of a SKU stays its ``stock_levels`` row, so no row moves and
every live hold settles as before: a line without allocation rows was held wholly at the
default location. Levels at other locations, the allocations of located lines and the
ledger's location are new.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"

_MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
    "mysql_engine": "InnoDB",
}
_CODE_LEN_MAX = 64
_I1 = "reserved >= 0 AND reserved <= on_hand + backorder_max AND backorder_max >= 0"


def upgrade() -> None:
    locations = op.create_table(
        "locations",
        sa.Column("code", sa.String(_CODE_LEN_MAX), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("priority", sa.BigInteger, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        **_MYSQL,
    )
    op.bulk_insert(
        locations,
        [{"code": "default", "name": "Default", "priority": 0, "active": True, "created_at_ms": 0}],
    )
    op.create_table(
        "location_levels",
        sa.Column(
            "sku", sa.String(_CODE_LEN_MAX), sa.ForeignKey("stock_levels.sku"), primary_key=True
        ),
        sa.Column(
            "location",
            sa.String(_CODE_LEN_MAX),
            sa.ForeignKey("locations.code"),
            primary_key=True,
        ),
        sa.Column("on_hand", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("safety_stock", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("backorder_max", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint(_I1, name="ck_location_never_oversold"),
        sa.CheckConstraint("on_hand <= 1000000000000", name="ck_location_on_hand_max"),
        **_MYSQL,
    )
    op.create_table(
        "reservation_allocations",
        sa.Column(
            "reservation_id",
            sa.String(36),
            sa.ForeignKey("reservations.id"),
            primary_key=True,
        ),
        sa.Column("sku", sa.String(_CODE_LEN_MAX), primary_key=True),
        sa.Column("location", sa.String(_CODE_LEN_MAX), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("backordered", sa.BigInteger, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_allocation_quantity_positive"),
        **_MYSQL,
    )
    op.create_index(
        "ix_reservation_allocations_location", "reservation_allocations", ["sku", "location"]
    )
    with op.batch_alter_table("stock_levels") as batch:
        batch.add_column(
            sa.Column("located", sa.Boolean, nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("reservation_lines") as batch:
        batch.add_column(
            sa.Column("allocated", sa.Boolean, nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("stock_movements") as batch:
        batch.add_column(
            sa.Column(
                "location", sa.String(_CODE_LEN_MAX), nullable=False, server_default="default"
            )
        )


def downgrade() -> None:
    """Refused in effect while any SKU is located: its other levels would be lost."""
    with op.batch_alter_table("stock_movements") as batch:
        batch.drop_column("location")
    with op.batch_alter_table("reservation_lines") as batch:
        batch.drop_column("allocated")
    with op.batch_alter_table("stock_levels") as batch:
        batch.drop_column("located")
    op.drop_index("ix_reservation_allocations_location", "reservation_allocations")
    op.drop_table("reservation_allocations")
    op.drop_table("location_levels")
    op.drop_table("locations")
