"""The events outbox, and the per-SKU low-stock threshold the ``stock.low`` event uses.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.add_column("stock_levels", sa.Column("low_stock_threshold", sa.BigInteger, nullable=True))
    op.create_table(
        "stock_events",
        sa.Column(
            "row_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("seq", sa.BigInteger, nullable=True, unique=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("sku", sa.String(64), nullable=True),
        sa.Column("reservation_id", sa.String(36), nullable=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_stock_events_sku", "stock_events", ["sku", "row_id"])


def downgrade() -> None:
    op.drop_index("ix_stock_events_sku", "stock_events")
    op.drop_table("stock_events")
    with op.batch_alter_table("stock_levels") as batch:
        batch.drop_column("low_stock_threshold")
