"""Initial schema: stock levels, products and variants, reservations, the stock ledger.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
    "mysql_engine": "InnoDB",
}
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stock_levels",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("on_hand", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="ck_stock_never_oversold"),
        sa.CheckConstraint("on_hand <= 1000000000000", name="ck_stock_on_hand_max"),
        **MYSQL,
    )
    op.create_table(
        "products",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("options_json", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "product_variants",
        sa.Column("sku", sa.String(64), sa.ForeignKey("stock_levels.sku"), primary_key=True),
        sa.Column("product_id", sa.String(36), sa.ForeignKey("products.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("options_json", sa.Text, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_product_variants_product", "product_variants", ["product_id", "position"])
    op.create_table(
        "reservations",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("order_id", sa.String(128), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("ended_at_ms", sa.BigInteger, nullable=True),
        sa.CheckConstraint(
            "status IN ('held', 'confirmed', 'released', 'expired')", name="ck_reservation_status"
        ),
        **MYSQL,
    )
    op.create_index("ix_reservations_due", "reservations", ["status", "expires_at_ms"])
    op.create_index("ix_reservations_customer", "reservations", ["customer_id"])
    op.create_table(
        "reservation_lines",
        sa.Column(
            "reservation_id", sa.String(36), sa.ForeignKey("reservations.id"), primary_key=True
        ),
        sa.Column("sku", sa.String(64), sa.ForeignKey("stock_levels.sku"), primary_key=True),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_line_quantity_positive"),
        **MYSQL,
    )
    op.create_index("ix_reservation_lines_sku", "reservation_lines", ["sku"])
    op.create_table(
        "stock_movements",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("sku", sa.String(64), sa.ForeignKey("stock_levels.sku"), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("on_hand_after", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("reservation_id", sa.String(36), nullable=True),
        **MYSQL,
    )
    op.create_index("ix_stock_movements_sku", "stock_movements", ["sku", "seq"])


def downgrade() -> None:
    for table in (
        "stock_movements",
        "reservation_lines",
        "reservations",
        "product_variants",
        "products",
        "stock_levels",
    ):
        op.drop_table(table)
