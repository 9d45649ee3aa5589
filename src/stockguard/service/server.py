"""``stockguard serve``: migrate once, then run N granian workers on one port.

The parent process checks what it can before starting anything (service/startup.py:
one line and an exit code per failure), migrates the database (so workers never race
on the schema), keeps an admin token when none is configured (service/admin_token.py),
and hands every setting to the workers in a file only its user can read
(``config.SETTINGS_FILE_ENV`` names it): granian starts each worker as a fresh
interpreter that builds its app with ``create_app_from_env``. With several workers,
Prometheus runs in its multi-process mode over a temporary directory made here
and removed on exit.

Why granian: on this project's 2-core machine it answers the same app ~1.5x faster than
uvicorn with httptools (its HTTP/1 parsing and writing run in Rust, off the event loop's
thread; docs/benchmarks.md, "HTTP path"), and its HTTP/1 stack (hyper) bounds what a slow
or hostile client can hold: a connection must send its request head within
``Settings.header_read_s_max``, and pipelined requests are answered one at a time, so a client
that never reads its answers stalls only itself (TCP backpressure), not the server.

SIGTERM / SIGINT are granian's: stop accepting, finish in-flight requests (at most
``GRACEFUL_S_MAX``), then each worker's lifespan stops its sweeper and closes its pools.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from granian.constants import Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server.mp import MPServer as Granian
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from stockguard import __version__
from stockguard.config import SETTINGS_FILE_ENV, Settings
from stockguard.service import admin_token, logs, startup
from stockguard.service.routes_ops import MULTIPROC_DIR_ENV
from stockguard.stores.sql.store import SqlStore

log = logging.getLogger("stockguard.serve")
APP_FACTORY = "stockguard.service.app:create_app_from_env"
GRACEFUL_S_MAX = 30
"""In-flight requests get this long to finish after SIGTERM before workers stop anyway."""
BACKLOG_MAX = 4096
"""Connections the kernel queues for accept per port (capped by net.core.somaxconn); a
flash sale opens them in bursts."""


async def _migrate(database_url: str) -> None:
    store = SqlStore.open(database_url, pool_size=1)
    try:
        await store.migrate()
    finally:
        await store.close()


def serve(settings: Settings, say: Callable[[str], None]) -> None:
    """Runs the service until SIGTERM/SIGINT; returns after a graceful shutdown.

    Raises ``startup.StartupFailure`` (before logging anything) for every
    failure an operator can fix: a missing package or setting, a port in use, a database
    that is not there (``say`` shows the countdown of its retries), an unwritable data
    directory. Once granian runs, every line is a log line in ``settings.log_format``.
    """
    startup.check_packages(settings.database_url, settings.strategy)
    startup.check_redis_url(settings.strategy, settings.redis_url)
    startup.check_traces(settings.traces)
    startup.check_port(settings.host, settings.port)
    asyncio.run(
        startup.reach_database(
            lambda: _migrate(settings.database_url),
            settings.database_url,
            settings.database_wait_s,
            say,
        )
    )
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    token_line = "admin token: configured (STOCKGUARD_ADMIN_TOKEN or the config file)"  # noqa: S105
    token_fields: dict[str, Any] = {"admin_token": "configured"}
    if settings.admin_token is None:
        token, path, created = admin_token.load_or_create(settings.data_dir)
        settings = settings.model_copy(update={"admin_token": SecretStr(token)})
        token_line = (
            f"admin token: {'generated in' if created else 'kept in'} {path} "
            "(`stockguard admin-token` shows it)"
        )
        token_fields = {"admin_token": "generated" if created else "kept", "file": str(path)}
    # Workers migrate nothing (the parent just did) and read their settings from a file
    # only this user can read: the token never enters the environment.
    run_dir = Path(tempfile.mkdtemp(prefix="stockguard-serve-"))
    settings_file = run_dir / "settings.json"
    settings.model_copy(update={"migrate": False}).write_for_workers(settings_file)
    os.environ[SETTINGS_FILE_ENV] = str(settings_file)

    metrics_dir: str | None = None
    if settings.workers > 1 and not os.environ.get(MULTIPROC_DIR_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="stockguard-metrics-")
        os.environ[MULTIPROC_DIR_ENV] = metrics_dir

    url = f"http://{settings.host}:{settings.port}"
    server = granian_server(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        header_read_s_max=settings.header_read_s_max,
        connections_max=settings.connections_max,
        log_config=logs.dict_config(settings.log_format, access_log=settings.access_log),
    )  # configures logging: the banner below is in the chosen format, as all that follows
    log.info(
        "stockguard %s serving %s (%s, strategy %s, workers %d)",
        __version__,
        url,
        where,
        settings.strategy,
        settings.workers,
        extra={
            "fields": {
                "version": __version__,
                "url": url,
                "database": where,
                "strategy": settings.strategy,
                "workers": settings.workers,
            }
        },
    )
    log.info("admin page: %s/admin", url, extra={"fields": {"admin_page": f"{url}/admin"}})
    log.info(token_line, extra={"fields": token_fields})
    try:
        server.serve()
    finally:
        os.environ.pop(SETTINGS_FILE_ENV, None)
        shutil.rmtree(run_dir, ignore_errors=True)
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def granian_server(
    target: str,
    *,
    factory: bool,
    port: int,
    workers: int,
    host: str = "127.0.0.1",
    header_read_s_max: float = Settings.model_fields["header_read_s_max"].default,
    connections_max: int = Settings.model_fields["connections_max"].default,
    log_config: dict[str, Any] | None = None,
) -> Granian:
    """The server ``serve`` runs (``stockguard bench-http`` runs its ceiling on the same)."""
    # Fresh interpreters, not forks: a worker must import prometheus_client after the
    # multi-process directory is set, and must not inherit the parent's migration engine.
    multiprocessing.set_start_method("spawn", force=True)
    return Granian(
        target,
        factory=factory,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.auto,  # uvloop where installed
        backlog=BACKLOG_MAX,
        backpressure=connections_max,
        http1_settings=HTTP1Settings(header_read_timeout=max(1, round(header_read_s_max * 1000))),
        log_dictconfig=log_config or logs.dict_config("json", access_log=False),
        workers_kill_timeout=GRACEFUL_S_MAX,
        websockets=False,
    )
