"""``stockguard serve``: migrate once, then run N uvicorn workers on one port.

The parent process migrates the database (so workers never race on the schema), makes
an admin token when none is configured, and hands every setting to the workers through
``STOCKGUARD_*`` variables: uvicorn starts each worker as a fresh interpreter that builds
its app with ``create_app_from_env``. With several workers, Prometheus runs in its
multi-process mode over a temporary directory made here and removed on exit.

SIGTERM / SIGINT are uvicorn's: stop accepting, finish in-flight requests (at most
``GRACEFUL_S_MAX``), then each worker's lifespan stops its sweeper and closes its pools.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from stockguard.config import Settings
from stockguard.service.routes_ops import MULTIPROC_DIR_ENV
from stockguard.stores.sql.store import SqlStore

APP_FACTORY = "stockguard.service.app:create_app_from_env"
GRACEFUL_S_MAX = 30
"""In-flight requests get this long to finish after SIGTERM before workers stop anyway."""
ADMIN_TOKEN_BYTES = 32
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _migrate(database_url: str) -> None:
    store = SqlStore.open(database_url, pool_size=1)
    try:
        await store.migrate()
    finally:
        await store.close()


def _log_config() -> dict[str, Any]:
    """Uvicorn's logging, plus one JSON line per request on stdout and stockguard's own
    warnings on stderr."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["line"] = {"format": "%(message)s"}
    config["handlers"]["requests"] = {
        "class": "logging.StreamHandler",
        "formatter": "line",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["stockguard"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["stockguard.http"] = {
        "handlers": ["requests"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def _event_loop_and_parser() -> tuple[str, str]:
    """uvloop and httptools where installed (``uvicorn[standard]``), else the stdlib ones."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    """Uvicorn re-raises the stop signal once its graceful shutdown is done; reaching
    this handler then means "stopped as asked": exit 0 after our own clean-up."""
    raise SystemExit(0)


def serve(settings: Settings, echo: Callable[[str], None]) -> None:
    """Runs the service until SIGTERM/SIGINT; returns after a graceful shutdown."""
    asyncio.run(_migrate(settings.database_url))
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    generated_token: str | None = None
    if settings.admin_token is None:
        generated_token = secrets.token_urlsafe(ADMIN_TOKEN_BYTES)
        settings = settings.model_copy(update={"admin_token": SecretStr(generated_token)})
    # Workers migrate nothing: the parent just did.
    os.environ.update(settings.model_copy(update={"migrate": False}).to_env())

    metrics_dir: str | None = None
    if settings.workers > 1 and not os.environ.get(MULTIPROC_DIR_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="stockguard-metrics-")
        os.environ[MULTIPROC_DIR_ENV] = metrics_dir

    loop, http = _event_loop_and_parser()
    url = f"http://{settings.host}:{settings.port}"
    echo(
        f"stockguard serving {url} ({where}, strategy {settings.strategy}, "
        f"workers {settings.workers}, {loop}/{http})"
    )
    echo(f"admin page: {url}/admin")
    if generated_token is not None:
        echo(f"admin token (generated, shown once): {generated_token}")
    previous = {sig: signal.signal(sig, _exit_cleanly) for sig in STOP_SIGNALS}
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop=loop,
            http=http,
            lifespan="on",
            access_log=False,
            log_config=_log_config(),
            timeout_graceful_shutdown=GRACEFUL_S_MAX,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
