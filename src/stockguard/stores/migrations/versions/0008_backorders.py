"""Backorders (docs/design.md#backorders): I1 becomes ``reserved <= on_hand +
backorder_max``, and a hold's lines record how many of their units are backordered.

SQLite rebuilds ``stock_levels`` for the new CHECK (``upgrade`` in ``migrations`` turns
its foreign keys off around it and checks them before commit).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"

_I1_BEFORE = "reserved >= 0 AND reserved <= on_hand"
_I1_AFTER = "reserved >= 0 AND reserved <= on_hand + backorder_max AND backorder_max >= 0"


def upgrade() -> None:
    with op.batch_alter_table("stock_levels") as batch:
        batch.drop_constraint("ck_stock_never_oversold", type_="check")
        batch.create_check_constraint("ck_stock_never_oversold", _I1_AFTER)
    with op.batch_alter_table("reservation_lines") as batch:
        batch.add_column(
            sa.Column("backordered", sa.BigInteger, nullable=False, server_default="0")
        )


def downgrade() -> None:
    """Refused by the database while any SKU is on backorder (the old I1 would not hold)."""
    with op.batch_alter_table("reservation_lines") as batch:
        batch.drop_column("backordered")
    with op.batch_alter_table("stock_levels") as batch:
        batch.drop_constraint("ck_stock_never_oversold", type_="check")
        batch.create_check_constraint("ck_stock_never_oversold", _I1_BEFORE)
