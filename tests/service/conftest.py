"""Fixtures for the HTTP service: the app in-process, and ``stockguard serve`` for real.

In-process tests drive the FastAPI app through httpx's ASGI transport with its lifespan
running (engine opened, sweeper started), on the session's database of each backend.
Served tests start the real command in a subprocess on a free port, wait for
``/healthz`` with bounded polling and always stop it (SIGTERM, then kill).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from stockguard.config import Settings
from stockguard.engine import Engine
from stockguard.service import create_app

from .support import ADMIN_TOKEN, Api, AppFactory, Served, run_serve


@pytest.fixture
def make_api(db_url: str) -> AppFactory:
    """Opens the app on this test's database; keyword arguments override settings."""

    @asynccontextmanager
    async def open_api(
        *,
        engine: Engine | None = None,
        lean: bool = True,
        tracer_provider: Any = None,
        **overrides: Any,
    ) -> AsyncIterator[Api]:
        values: dict[str, Any] = {
            "database_url": db_url,
            "admin_token": ADMIN_TOKEN,
            "api_token": None,
            "migrate": False,
            "pool_size": 4,
            "sweep_interval_s": 3_600.0,  # no sweep unless a test asks for one
        }
        values.update(overrides)
        app = create_app(
            Settings(**values), engine=engine, lean=lean, tracer_provider=tracer_provider
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://stockguard.test"
            ) as client,
        ):
            yield Api(client)

    return open_api


@pytest.fixture
async def api(make_api: AppFactory) -> AsyncIterator[Api]:
    async with make_api() as opened:
        yield opened


@pytest.fixture
def serve(tmp_path: Path) -> Callable[..., AbstractContextManager[Served]]:
    """``with serve("--db", url, env={...}) as served:`` runs ``stockguard serve``."""

    def start(*args: str, env: dict[str, str] | None = None) -> AbstractContextManager[Served]:
        return run_serve(tmp_path, *args, env=env)

    return start
