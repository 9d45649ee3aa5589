"""Fixtures that run every test against real servers: SQLite, PostgreSQL, MariaDB, Redis.

Each test session creates its own databases on the PostgreSQL and MariaDB servers
(``sg_test_<random>``), migrates them once, empties every table before each test and
drops them at the end, so sessions running side by side never see each other's rows.
A server that cannot be reached skips its tests with the reason, except when
``STOCKGUARD_REQUIRE_SERVICES=1`` (CI), where it fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings
from playwright.async_api import Browser, Error, async_playwright
from sqlalchemy import delete, insert
from sqlalchemy.engine import make_url

from stockguard import strategies
from stockguard.admission import AdmissionLimits
from stockguard.engine import Engine
from stockguard.stores.sql.schema import DEFAULT_LOCATION_ROW, locations, metadata
from stockguard.stores.sql.store import SqlStore

SERVER_URLS = {
    "postgres": os.environ.get(
        "STOCKGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("STOCKGUARD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
NO_WAIT_BUDGET = AdmissionLimits(queue_wait_s_max=0)
"""Admission with its caps and sold-out fast path, without the wait budget: the contract
suite asserts exact outcomes of bursts a per-request strategy cannot clear within the
budget on a busy machine, which would rightly answer some of them 429. The budget has
tests of its own (tests/test_admission_budget.py)."""
REDIS_URL = os.environ.get("STOCKGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = ("sqlite", "postgres", "mysql", "memory")
"""``memory``: the in-memory store (stores/memory.py). Only tests marked ``memory`` run on
it (the contract suite, whose tables it must keep exactly); the others need SQL."""
MEMORY_URL = "memory://"

settings.register_profile("long", max_examples=200, stateful_step_count=60, deadline=None)
"""``pytest --hypothesis-profile long``: the deep form of the property and stateful tests
(tests/test_stateful.py runs a bounded form otherwise)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "memory: also runs on the in-memory store (the 'memory' backend)"
    )


CHROMIUM = os.environ.get("STOCKGUARD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium_installed() -> bool:
    return Path(CHROMIUM).exists()


def _unavailable(message: str) -> None:
    if os.environ.get("STOCKGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (STOCKGUARD_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not _chromium_installed():
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
        except Error as error:
            _unavailable(f"Chromium at {CHROMIUM} does not start: {error}")
        try:
            yield launched
        finally:
            await launched.close()


def service_unreachable(what: str, error: BaseException) -> None:
    """Skips (laptop) or fails (CI) a test whose real server cannot be reached."""
    message = f"{what} is unreachable: {type(error).__name__}: {error}"
    if os.environ.get("STOCKGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (STOCKGUARD_REQUIRE_SERVICES=1)")
    pytest.skip(message)


async def _admin_execute(backend: str, statement: str) -> None:
    """Runs one statement on the server's maintenance database (CREATE/DROP DATABASE)."""
    url = make_url(SERVER_URLS[backend])
    if backend == "postgres":
        import asyncpg

        connection = await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database=url.database,
            timeout=5,
        )
        try:
            await connection.execute(statement)
        finally:
            await connection.close()
    else:
        import asyncmy

        connection = await asyncmy.connect(
            host=url.host,
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            connect_timeout=5,
        )
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(statement)
        finally:
            connection.close()


async def _create_server_database(backend: str, name: str) -> str:
    if backend == "postgres":
        await _admin_execute(backend, f'CREATE DATABASE "{name}"')
    else:
        await _admin_execute(
            backend, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
        )
    return make_url(SERVER_URLS[backend]).set(database=name).render_as_string(hide_password=False)


async def _drop_server_database(backend: str, name: str) -> None:
    if backend == "postgres":
        await _admin_execute(backend, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        await _admin_execute(backend, f"DROP DATABASE IF EXISTS `{name}`")


class Databases:
    """One migrated database per backend for this session, created on first use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.suffix = uuid.uuid4().hex[:10]
        self.urls: dict[str, str] = {}
        self.stores: dict[str, SqlStore] = {}
        self.failures: dict[str, BaseException] = {}

    async def url(self, backend: str) -> str:
        if backend in self.failures:
            service_unreachable(backend, self.failures[backend])
        if backend not in self.urls:
            try:
                if backend == "sqlite":
                    url = f"sqlite:///{self.tmp / 'stockguard-test.db'}"
                else:
                    url = await _create_server_database(backend, f"sg_test_{self.suffix}")
                store = SqlStore.open(url, pool_size=2)
                await store.migrate()
            except (OSError, ConnectionError, TimeoutError, ImportError) as error:
                self.failures[backend] = error
                service_unreachable(backend, error)
            except Exception as error:  # a driver error while connecting
                if "connect" not in str(error).lower():
                    raise
                self.failures[backend] = error
                service_unreachable(backend, error)
            self.urls[backend] = url
            self.stores[backend] = store
        return self.urls[backend]

    async def clean(self, backend: str) -> None:
        """Empties every table, children first, so each test starts from nothing."""
        async with self.stores[backend].transaction() as tx:
            for table in reversed(metadata.sorted_tables):
                await tx.connection.execute(delete(table))
            await tx.connection.execute(insert(locations), [DEFAULT_LOCATION_ROW])
            await tx.commit()

    async def close(self) -> None:
        for store in self.stores.values():
            await store.close()
        for backend in self.urls:
            if backend != "sqlite":
                await _drop_server_database(backend, f"sg_test_{self.suffix}")


@pytest.fixture(scope="session")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Databases]:
    registry = Databases(tmp_path_factory.mktemp("db"))
    yield registry
    await registry.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_url(databases: Databases, backend: str, request: pytest.FixtureRequest) -> str:
    """A migrated, empty database on ``backend`` (``memory://``: a new store per engine)."""
    if backend == "memory":
        if request.node.get_closest_marker("memory") is None:
            pytest.skip("needs a SQL database (not marked 'memory')")
        return MEMORY_URL
    url = await databases.url(backend)
    await databases.clean(backend)
    return url


@pytest.fixture(params=strategies.names())
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def redis_url() -> str:
    """The real Redis, checked reachable (synchronously: other fixtures ask for it lazily)."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        service_unreachable("redis", error)
    return REDIS_URL


@pytest.fixture
async def engine(
    db_url: str, strategy: str, request: pytest.FixtureRequest
) -> AsyncIterator[Engine]:
    """An engine on an empty database, for every backend × every strategy."""
    options: dict[str, str] = {}
    if db_url == MEMORY_URL and not strategies.strategy_class(strategy).memory:
        pytest.skip(f"strategy {strategy!r} needs SQL tables of its own or Redis")
    if "redis" in strategies.strategy_class(strategy).requires:
        # Other pytest sessions share this Redis: every engine gets its own keyspace.
        options["redis_url"] = request.getfixturevalue("redis_url")
        options["key_prefix"] = redis_test_prefix()
    opened = await Engine.open(db_url, strategy, migrate=False, admission=NO_WAIT_BUDGET, **options)
    try:
        yield opened
    finally:
        await opened.close()
        if "key_prefix" in options:
            await drop_redis_keyspace(options["redis_url"], options["key_prefix"])


def redis_test_prefix() -> str:
    """A Redis key prefix no other test or session uses."""
    return f"sg-test-{uuid.uuid4().hex[:12]}"


async def drop_redis_keyspace(url: str, prefix: str) -> None:
    """Deletes one test keyspace (SCAN + UNLINK of its prefix; never FLUSHDB)."""
    from stockguard.stores.redis.client import drop_keyspace

    await drop_keyspace(url, prefix)
