"""Kits: a SKU sold as a fixed set of component SKUs (docs/design.md#kits).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.create_table(
        "kit_components",
        sa.Column("kit_sku", sa.String(64), primary_key=True),
        sa.Column(
            "component_sku", sa.String(64), sa.ForeignKey("stock_levels.sku"), primary_key=True
        ),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_kit_component_quantity_positive"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("kit_components")
