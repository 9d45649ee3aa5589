"""Alembic environment: always runs on the connection stockguard hands it."""

from __future__ import annotations

from alembic import context

from stockguard.stores.sql.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `stockguard migrate --db URL`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
