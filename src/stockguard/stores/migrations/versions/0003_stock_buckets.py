"""The sharded strategy's tables: stock buckets, and which bucket each held line came from.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.create_table(
        "stock_buckets",
        sa.Column("sku", sa.String(64), sa.ForeignKey("stock_levels.sku"), primary_key=True),
        sa.Column("bucket", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("on_hand", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "reserved >= 0 AND reserved <= on_hand", name="ck_bucket_never_oversold"
        ),
        **MYSQL,
    )
    op.create_table(
        "reservation_buckets",
        sa.Column(
            "reservation_id", sa.String(36), sa.ForeignKey("reservations.id"), primary_key=True
        ),
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_reservation_bucket_quantity_positive"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("reservation_buckets")
    op.drop_table("stock_buckets")
