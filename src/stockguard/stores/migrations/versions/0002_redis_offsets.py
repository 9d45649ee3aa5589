"""The redis strategy's persister position per event stream.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.create_table(
        "redis_offsets",
        sa.Column("stream", sa.String(200), primary_key=True),
        sa.Column("epoch", sa.String(36), nullable=False),
        sa.Column("last_id", sa.String(48), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("redis_offsets")
