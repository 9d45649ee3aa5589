"""What ``serve`` checks before it starts anything, and how it says what is wrong.

Every failure an operator can meet at start-up is one ``StartupFailure``: one line that
says what is wrong, one line that says how to fix it, and an exit code of its own
(``EXIT_CODES``; docs/deploy.md lists them), so a supervisor or a deploy script can tell
them apart without reading text. The checks run cheapest first and all before a token
or a banner is printed: settings, packages, the port, then the database (with a bounded
retry, counted down on stderr, because a database started by the same ``systemctl``
call may still be coming up).
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import math
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from stockguard import strategies

EXIT_SETTINGS = 2
"""A setting is invalid (also typer's code for a bad flag)."""
EXIT_MISSING_SETTING = 3
"""A setting the chosen configuration needs is not set (a Redis URL)."""
EXIT_MISSING_PACKAGE = 4
"""An optional dependency the configuration needs is not installed."""
EXIT_DATABASE = 5
"""The database cannot be reached or refuses the connection."""
EXIT_PORT = 6
"""The address cannot be listened on (in use, or not this host's)."""
EXIT_DATA_DIR = 7
"""The data directory (the generated admin token's home) cannot be written."""

EXIT_CODES = {
    EXIT_SETTINGS: "invalid setting",
    EXIT_MISSING_SETTING: "missing setting",
    EXIT_MISSING_PACKAGE: "missing package",
    EXIT_DATABASE: "database unreachable",
    EXIT_PORT: "port unavailable",
    EXIT_DATA_DIR: "data directory not writable",
}

RETRY_PAUSE_S_MAX = 2.0
"""Pause between two connection attempts to a database that is not up yet."""

_DRIVERS = {
    "postgresql": ("asyncpg", "postgres"),
    "postgres": ("asyncpg", "postgres"),
    "mysql": ("asyncmy", "mysql"),
    "mariadb": ("asyncmy", "mysql"),
}
"""URL scheme (without ``+driver``) → (module, extra that installs it)."""
_EXTRAS = {"redis": "redis", "hiredis": "redis", "asyncpg": "postgres", "asyncmy": "mysql"}
"""Optional module → the extra that installs it."""
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306}


@dataclass
class StartupFailure(Exception):
    """What is wrong, how to fix it, and the exit code that names the kind."""

    code: int
    problem: str
    fix: str

    def lines(self) -> list[str]:
        return [f"stockguard: {self.problem}", f"  fix: {self.fix}"]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_packages(database_url: str, strategy: str) -> None:
    """The database driver and the Redis client the configuration needs are installed."""
    scheme = make_url(database_url).drivername.split("+")[0]
    driver = _DRIVERS.get(scheme)
    if driver is not None and not _installed(driver[0]):
        module, extra = driver
        raise StartupFailure(
            EXIT_MISSING_PACKAGE,
            f"the {scheme} database needs the {module} driver, which is not installed",
            f"pip install 'stockguard[{extra}]'",
        )
    try:
        strategies.strategy_class(strategy)
    except ModuleNotFoundError as missing:
        module = (missing.name or "").split(".")[0]
        wanted = _EXTRAS.get(module)
        raise StartupFailure(
            EXIT_MISSING_PACKAGE,
            f"strategy {strategy} needs the {module} package, which is not installed",
            f"pip install 'stockguard[{wanted}]'" if wanted else f"pip install {module}",
        ) from None


def check_traces(mode: str) -> None:
    """Traces need the OpenTelemetry SDK (the ``otel`` extra); exporting them over OTLP
    also needs an exporter package, which stockguard leaves to the operator (HTTP or
    gRPC, and its own dependencies)."""
    if mode == "off":
        return
    if not _installed_nested("opentelemetry.sdk"):
        raise StartupFailure(
            EXIT_MISSING_PACKAGE,
            f"traces = {mode} needs the OpenTelemetry SDK, which is not installed",
            "pip install 'stockguard[otel]'",
        )
    exporters = ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.exporter.otlp.proto.grpc")
    if mode == "otlp" and not any(_installed_nested(module) for module in exporters):
        raise StartupFailure(
            EXIT_MISSING_PACKAGE,
            "traces = otlp needs an OTLP exporter package, and none is installed",
            "pip install opentelemetry-exporter-otlp-proto-http (or -grpc)",
        )


def _installed_nested(module: str) -> bool:
    """``_installed`` for a dotted name whose parent package may be missing too."""
    try:
        return _installed(module)
    except ModuleNotFoundError:
        return False


def check_redis_url(strategy: str, redis_url: str | None) -> None:
    if redis_url is None and "redis" in strategies.strategy_class(strategy).requires:
        raise StartupFailure(
            EXIT_MISSING_SETTING,
            f"strategy {strategy} needs a Redis URL and none is set",
            "pass --redis-url redis://HOST:6379/0 or set STOCKGUARD_REDIS_URL "
            "(or redis_url in the --config file)",
        )


def check_port(host: str, port: int) -> None:
    """The address can be listened on now (granian binds it a moment later, with the same
    ``SO_REUSEADDR``, so a socket in TIME_WAIT is no conflict for either)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise StartupFailure(
            EXIT_PORT,
            f"cannot listen on {host}:{port}: {error.strerror}",
            "pass --host with an address of this machine (127.0.0.1, 0.0.0.0, ::)",
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise StartupFailure(
                    EXIT_PORT,
                    f"port {port} on {host} is already in use by another process",
                    f"stop that process (ss -ltnp 'sport = :{port}' names it) or pass "
                    "--port / set STOCKGUARD_PORT to a free one",
                ) from None
            raise StartupFailure(
                EXIT_PORT,
                f"cannot listen on {host}:{port}: {error.strerror or error}",
                "pass --host with an address of this machine and a --port you may use",
            ) from None


def database_address(database_url: str) -> str:
    """``host:port`` of a server database, the file of SQLite."""
    url = make_url(database_url)
    scheme = url.drivername.split("+")[0]
    if scheme == "sqlite":
        return url.database or ":memory:"
    port = url.port or _DEFAULT_PORTS.get(scheme)
    return f"{url.host or 'localhost'}:{port}"


def _reason(error: BaseException) -> tuple[str, bool]:
    """A short reason for a failed connection, and whether trying again may help (the
    server is not up yet) or not (it answered and said no)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused", True
        if isinstance(current, socket.gaierror):
            return f"host not found ({current.strerror})", True
        if isinstance(current, TimeoutError):
            return "no answer (timed out)", True
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower(), True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    if first.startswith("("):  # SQLAlchemy's "(driver.Error) text" wrapper
        first = first.split(") ", 1)[-1]
    return first[:200], False


async def reach_database(
    connect: Callable[[], Awaitable[None]],
    database_url: str,
    wait_s: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Runs ``connect`` (the migration: it is the first connection anyway) until it works,
    retrying a database that is not up for at most ``wait_s`` with a countdown on ``say``;
    a database that answers with a refusal (password, missing database) fails at once."""
    where = database_address(database_url)
    deadline = clock() + wait_s
    pause_s = 0.25
    while True:
        try:
            await connect()
            return
        except Exception as error:
            reason, retryable = _reason(error)
            left_s = deadline - clock()
            if not retryable or left_s <= 0:
                if retryable:
                    tried = f" (tried for {wait_s:g} s)" if wait_s > 0 else ""
                    fix = (
                        "start the database, or point --db / STOCKGUARD_DATABASE_URL at one "
                        "that runs (STOCKGUARD_DATABASE_WAIT_S sets how long to wait for it)"
                    )
                else:
                    tried = ""
                    fix = (
                        "check the user, password and database name in --db / "
                        "STOCKGUARD_DATABASE_URL, and that this user may connect"
                    )
                raise StartupFailure(
                    EXIT_DATABASE, f"cannot reach the database at {where}: {reason}{tried}", fix
                ) from None
            pause_s = min(pause_s * 2, RETRY_PAUSE_S_MAX, left_s)
            say(
                f"stockguard: database {where} not reachable ({reason}); "
                f"retrying, {math.ceil(left_s)} s left"
            )
            await asyncio.sleep(pause_s)
