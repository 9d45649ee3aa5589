"""A SKU's stock policy: safety stock, backorder allowance, per-customer cap
(docs/design.md#stock-policy). ``low_stock_threshold`` (0004) is the fourth field.

The columns sit on ``stock_levels`` so the statement that reads or conditionally updates
a level also reads its policy: a shop without policies pays no query for them.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("stock_levels") as batch:
        batch.add_column(
            sa.Column("safety_stock", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("backorder_max", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("customer_max", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stock_levels") as batch:
        batch.drop_column("customer_max")
        batch.drop_column("backorder_max")
        batch.drop_column("safety_stock")
