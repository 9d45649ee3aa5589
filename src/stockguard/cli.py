"""The ``stockguard`` command. Each subcommand is a thin shell over the engine.

One module over ~350 lines on purpose: it is the table of contents of the command line,
one thin function per subcommand, each of which only parses options and calls the module
that does the work; split, a reader would have to look in several places for what
``stockguard --help`` lists.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy.engine import make_url

from stockguard import __version__, strategies
from stockguard.bench.command import bench
from stockguard.bench.http import command as bench_http
from stockguard.config import Settings, settings_markdown
from stockguard.engine import DEFAULT_DATABASE_URL, Engine
from stockguard.events.command import events_app, relay_command
from stockguard.loadtest.command import command as loadtest
from stockguard.service import admin_token, server, startup
from stockguard.stores.redis.keys import PREFIX_DEFAULT
from stockguard.stores.sql.audit import AuditReport, audit
from stockguard.stores.sql.store import SqlStore
from stockguard.verify.command import app as verify_app

app = typer.Typer(
    help="stockguard: inventory reservations that never oversell.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
app.command("relay")(relay_command)  # docs/events.md#the-relay
app.add_typer(events_app, name="events")  # stockguard events tail
app.add_typer(verify_app, name="verify")  # docs/reliability.md: fault runs and re-checks


def _show_version(given: bool) -> None:
    if given:
        typer.echo(f"stockguard {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """stockguard: inventory reservations that never oversell."""


DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="STOCKGUARD_DATABASE_URL",
        help="Database URL: sqlite:///path.db, postgresql://user@host/db or mysql://user@host/db.",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings file, under flags and STOCKGUARD_* variables (or set "
        "STOCKGUARD_CONFIG).",
        exists=False,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where a generated admin token is kept (default $STATE_DIRECTORY, else "
        "$XDG_STATE_HOME/stockguard, else ~/.local/state/stockguard).",
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
def migrate(
    db: DbOption = DEFAULT_DATABASE_URL,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Change nothing: exit 0 if the database is at this version's schema, 1 if "
            "it needs migrating (for deploy pipelines).",
        ),
    ] = False,
) -> None:
    """Apply every schema migration to the database (safe to run again, and from several
    hosts at once: the first migrates, the others wait for it and find nothing to do)."""
    from stockguard.stores.migrations import current_revision, head_revision

    async def run() -> str | None:
        store = SqlStore.open(db)
        try:
            if not check:
                await store.migrate()
            return await current_revision(store)
        finally:
            await store.close()

    where = SqlStore.open(db).backend.describe()
    current, head = asyncio.run(run()), head_revision()
    if check:
        if current != head:
            console.print(f"[yellow]needs migrating[/yellow] {where}: at {current}, head {head}")
            raise typer.Exit(1)
        console.print(f"[green]up to date[/green] {where}: at {head}")
        return
    console.print(f"[green]migrated[/green] {where}: at {current}")


@app.command("audit")
def audit_command(db: DbOption = DEFAULT_DATABASE_URL) -> None:
    """Check invariants I1-I4 on the tables (docs/design.md#invariants): after a restore,
    or any time. Exit 1 when one is broken. With the redis or queue strategy, run it
    with serve stopped (their last answers reach SQL on a graceful stop)."""

    async def run() -> AuditReport:
        store = SqlStore.open(db, pool_size=1)
        try:
            return await audit(store)
        finally:
            await store.close()

    report = asyncio.run(run())
    for violation in report.violations:
        _say(f"violation: {violation}")
    if not report.ok:
        _say(f"audit: {len(report.violations)} violation(s), {report.oversold_units} oversold")
        raise typer.Exit(1)
    typer.echo(f"audit: {report.skus} SKU(s), invariants I1-I4 hold, 0 oversold")


@app.command()
def backup(
    target: Annotated[Path, typer.Argument(help="The new file (must not exist).")],
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Copy a SQLite database while serve runs, with SQLite's online backup API (a
    consistent snapshot; writers wait only for the pages being copied). PostgreSQL:
    pg_dump; MariaDB: mariadb-dump (docs/deploy.md, "Backups")."""
    url = make_url(db)
    if url.get_backend_name() != "sqlite" or not url.database:
        _say(f"stockguard: backup copies SQLite files; {url.get_backend_name()} has its own tool")
        _say("  fix: pg_dump -Fc (PostgreSQL) or mariadb-dump --single-transaction (MariaDB)")
        raise typer.Exit(startup.EXIT_SETTINGS)
    source_path = Path(url.database)
    if not source_path.is_file():
        _say(f"stockguard: no SQLite database at {source_path}")
        _say("  fix: pass --db sqlite:///PATH of the file serve uses")
        raise typer.Exit(startup.EXIT_DATABASE)
    if target.exists():
        _say(f"stockguard: {target} exists; a backup never overwrites")
        _say("  fix: name a new file")
        raise typer.Exit(startup.EXIT_SETTINGS)
    source = sqlite3.connect(f"{source_path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy, pages=1024)  # steps, so serve's writers get turns
        finally:
            copy.close()
    finally:
        source.close()
    typer.echo(f"backed up {source_path} to {target}")


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


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Processes serving the one port, all correct together (default 1)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help=f"Database URL (default {DEFAULT_DATABASE_URL})."),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help=f"Concurrency strategy: {', '.join(strategies.names())}."),
    ] = None,
    sweep_interval_s: Annotated[
        float | None, typer.Option(help="Seconds between expiry sweeps (default 1.0).")
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="One JSON line per request on stdout (default off: it costs more than a "
            "reservation at flash-sale rates).",
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option("--redis-url", help="Redis URL, for the redis and queue strategies."),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="Log lines as json (default) or logfmt."),
    ] = None,
    traces: Annotated[
        str | None,
        typer.Option(help="OpenTelemetry spans: off (default), otlp or console (the otel extra)."),
    ] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the HTTP API (migrates the database first; SIGTERM/SIGINT stop it gracefully).

    Settings: these flags, then STOCKGUARD_* variables (STOCKGUARD_DATABASE_URL,
    STOCKGUARD_STRATEGY, STOCKGUARD_ADMIN_TOKEN, …), then the --config file, then defaults;
    docs/configuration.md lists them all (or run `stockguard config --markdown`).

    Without an admin token set, one is generated once and kept in the data directory
    (`stockguard admin-token` shows it). A start-up failure is one line and its fix, with
    its own exit code: 2 invalid setting, 3 missing setting, 4 missing package,
    5 database unreachable, 6 port unavailable, 7 data directory not writable.
    """
    settings = _settings(
        config,
        host=host,
        port=port,
        workers=workers,
        database_url=db,
        strategy=strategy,
        sweep_interval_s=sweep_interval_s,
        access_log=access_log,
        redis_url=redis_url,
        log_format=log_format,
        traces=traces,
        data_dir=data_dir,
    )
    try:
        server.serve(settings, say=_say)
    except startup.StartupFailure as failure:
        _fail(failure)


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _fail(failure: startup.StartupFailure) -> NoReturn:
    for line in failure.lines():
        _say(line)
    raise typer.Exit(failure.code)


@app.command("admin-token")
def admin_token_command(
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate",
            help="Replace the stored token (running servers keep the old one until they "
            "restart; every admin session is signed out then).",
        ),
    ] = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Show the admin token `serve` generated and keeps (making it if there is none yet),
    or --rotate it. Its file (mode 0600) is printed on stderr, the token on stdout."""
    settings = _settings(config, data_dir=data_dir)
    if settings.admin_token is not None:
        _say(
            "stockguard: the admin token is configured (STOCKGUARD_ADMIN_TOKEN or the config "
            "file), not generated: nothing is stored to show or rotate"
        )
        raise typer.Exit(startup.EXIT_SETTINGS)
    try:
        if rotate:
            token, path = admin_token.rotate(settings.data_dir)
            _say(f"admin token rotated in {path}; restart serve to use it")
        else:
            token, path, created = admin_token.load_or_create(settings.data_dir)
            _say(f"admin token {'generated in' if created else 'kept in'} {path}")
    except startup.StartupFailure as failure:
        _fail(failure)
    typer.echo(token)


def _settings(config: Path | None, **flags: Any) -> Settings:
    """Settings from flags over variables over the file, or one line per invalid one."""
    try:
        return Settings.load(config, **flags)
    except ValidationError as invalid:
        for error in invalid.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            _say(f"stockguard: invalid setting {where}: {error['msg']}")
        raise typer.Exit(startup.EXIT_SETTINGS) from None
    except ValueError as invalid:  # the config file itself (missing, not TOML)
        _say(f"stockguard: invalid settings: {invalid}")
        raise typer.Exit(startup.EXIT_SETTINGS) from None


@app.command("config")
def show_config(
    config: ConfigOption = None,
    markdown: Annotated[
        bool, typer.Option(help="Print every setting as a Markdown table (docs/configuration.md).")
    ] = False,
) -> None:
    """Show the settings `serve` would run with (secrets masked), or document them all."""
    if markdown:
        typer.echo(settings_markdown(), nl=False)
        return
    typer.echo(_settings(config).model_dump_json(indent=2))


app.command()(bench)
app.command("bench-http")(bench_http)
app.command("loadtest")(loadtest)

RedisOption = Annotated[
    str,
    typer.Option(
        "--redis",
        envvar="STOCKGUARD_REDIS_URL",
        help="Redis URL of the redis strategy, e.g. redis://127.0.0.1:6379/0.",
    ),
]
PrefixOption = Annotated[
    str,
    typer.Option(
        "--prefix",
        envvar="STOCKGUARD_REDIS_PREFIX",
        help="Key prefix of the redis strategy's keyspace (its keys are '{prefix}:…'); "
        "the one the service uses (default stockguard).",
    ),
]


@app.command()
def reconcile(
    redis: RedisOption,
    db: DbOption = DEFAULT_DATABASE_URL,
    prefix: PrefixOption = PREFIX_DEFAULT,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Make Redis what SQL plus the unpersisted event tail says where they differ "
            "(without it, only print the differences).",
        ),
    ] = False,
) -> None:
    """Compare Redis with SQL for the redis strategy; load Redis from SQL when it is empty.

    Exit 0 when Redis was loaded or matches (after --repair), 1 when differences remain.
    """
    # Imported here: Redis is an optional dependency (stockguard[redis]).
    from stockguard.stores.redis.commands import run_reconcile

    report = asyncio.run(run_reconcile(db, redis, prefix, repair))
    if report.loaded is not None:
        loaded = report.loaded
        console.print(
            f"[green]loaded[/green] Redis from SQL: {loaded.skus} SKU(s), {loaded.held} held "
            f"reservation(s), {loaded.orders} order id(s); replaced {loaded.keys_replaced} "
            f"stale key(s); epoch {loaded.epoch}"
        )
    for difference in report.differences:
        console.print(
            f"[yellow]differs[/yellow] {difference.subject}: Redis {difference.redis}, "
            f"SQL + tail {difference.expected}"
        )
    for poison in report.poison_in_tail:
        console.print(f"[red]poison event in the tail[/red] {poison}")
    console.print(
        f"{report.tail_events} event(s) not yet persisted; {report.dead_letters} dead letter(s); "
        f"{report.repaired} repair(s)"
    )
    if not report.consistent:
        raise typer.Exit(1)
    console.print("[green]consistent[/green]")


@app.command()
def persist(
    redis: RedisOption,
    db: DbOption = DEFAULT_DATABASE_URL,
    prefix: PrefixOption = PREFIX_DEFAULT,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="Stop once every event in the stream is in SQL (exit 1 if that takes over "
            "10 minutes) instead of running until SIGINT/SIGTERM.",
        ),
    ] = False,
) -> None:
    """Run the redis strategy's persister alone: copy the Redis event stream into SQL.

    `serve` runs one inside every process already; a lease lets one of them work at a time.
    """
    from stockguard.stores.redis.commands import run_persister

    if not asyncio.run(run_persister(db, redis, prefix, until_idle)):
        console.print("[red]the stream was not drained in time[/red]")
        raise typer.Exit(1)
    console.print("persister stopped")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
