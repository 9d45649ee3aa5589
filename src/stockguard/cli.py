"""The ``stockguard`` command. Each subcommand is a thin shell over the engine."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from stockguard import strategies
from stockguard.engine import DEFAULT_DATABASE_URL, Engine
from stockguard.stores.sql.store import SqlStore

app = typer.Typer(
    help="stockguard: inventory reservations that never oversell.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="STOCKGUARD_DATABASE_URL",
        help="Database URL: sqlite:///path.db, postgresql://user@host/db or mysql://user@host/db.",
    ),
]
StrategyOption = Annotated[
    str,
    typer.Option(
        "--strategy",
        envvar="STOCKGUARD_STRATEGY",
        help=f"Concurrency strategy: {', '.join(strategies.names())}.",
    ),
]


@app.command()
def migrate(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Apply every schema migration to the database (safe to run again)."""

    async def run() -> None:
        store = SqlStore.open(db)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())
    console.print(f"[green]migrated[/green] {SqlStore.open(db).backend.describe()}")


@app.command()
def expire(
    db: DbOption = DEFAULT_DATABASE_URL,
    strategy: StrategyOption = strategies.DEFAULT_STRATEGY,
) -> None:
    """Run one expiry sweep: end every held reservation past its expiry (for cron)."""

    async def run() -> int:
        async with await Engine.open(db, strategy) as engine:
            return await engine.expire_due()

    ended = asyncio.run(run())
    console.print(f"expired {ended} reservation(s)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
