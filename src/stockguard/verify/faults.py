"""The fault harness: a real ``stockguard serve``, a mixed load, one fault, the checker.

Each run starts what it needs of its own (a fresh database on the shared PostgreSQL or
MariaDB server, or a SQLite file; for some faults a PostgreSQL instance or redis-server of
its own, a tmpfs, a TCP proxy), starts ``serve`` as a user does, drives ``load.Load``
while a fault task breaks something on a schedule, heals everything, reads the final
state over HTTP and checks it (``checker.check``, which includes the service's audit).

Faults (``FAULTS``):

``none``          the baseline: load, no fault.
``db-reset``      a proxy between serve and the database resets every connection every
                  ``interval_s``: transactions cut mid-flight, commits whose answer is lost.
``db-latency``    the proxy delays every chunk ``latency_s`` (50-500 ms), both ways, for
                  the whole run.
``serve-kill``    SIGKILL to serve's whole process group (``--workers`` N) every
                  ``interval_s``, then a restart on the same port; with ``sweep_kills``
                  the first kill and every second one after it land inside an expiry
                  sweep's transaction.
``pg-restart``    PostgreSQL of the run's own: ``pg_ctl stop -m immediate``, then start.
``redis-restart`` redis-server of the run's own, SIGKILL and restart, per ``aof`` setting:
                  ``always`` and ``everysec`` must lose nothing on a process kill, ``no``
                  at most the persister's lag at the kill (docs/durability.md#what-a-crash-loses),
                  then ``stockguard reconcile`` reloads the empty Redis from SQL.
``persister-kill`` the redis strategy's persister run alone (``stockguard persist``, holding
                  the lease before serve starts), SIGKILLed and restarted: its lease lapses,
                  another persister takes over, nothing answered is lost.
``disk-full``     SQLite on a small tmpfs (root only): the disk is filled, then freed.
``partition``     two serve processes, the second reaching the database through the proxy,
                  which blackholes it for ``interval_s`` at a time.

Lives in the package (not tests/) so that ``stockguard verify faults`` runs the long forms;
the pytest fixtures in ``tests/jepsen`` run the short ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from stockguard import strategies
from stockguard.verify.checker import Anomaly, FinalState, Report, check
from stockguard.verify.fetch import read_final
from stockguard.verify.history import History, Kind
from stockguard.verify.load import Load, LoadPlan
from stockguard.verify.proxy import TcpProxy, free_port

ADMIN_TOKEN = "verify-admin-token"  # noqa: S105 (a throwaway serve's, for its run)
SERVER_URLS = {
    "postgres": os.environ.get(
        "STOCKGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("STOCKGUARD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
REDIS_URL = os.environ.get("STOCKGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_S_MAX = 60.0
FAULTS = (
    "none",
    "db-reset",
    "db-latency",
    "serve-kill",
    "pg-restart",
    "redis-restart",
    "persister-kill",
    "disk-full",
    "partition",
)


SWEEP_WAITING = """
SELECT count(*) FROM pg_stat_activity AS activity
WHERE activity.datname = $1 AND activity.pid <> pg_backend_pid()
  AND activity.wait_event_type = 'Lock'
  AND EXISTS (SELECT 1 FROM pg_locks AS held
              WHERE held.pid = activity.pid AND held.granted
                AND held.relation = 'reservations'::regclass AND held.mode = 'RowExclusiveLock')
"""
"""Connections of the run's database waiting on a lock after having updated reservations."""


LOSS_CHECKS = frozenset({"lost", "bounds", "replay", "ended-once"})
"""What a lost acknowledged write shows as: missing (``lost``), fewer units held than
acknowledged (``bounds``), a replay of a lost order answered as a new hold (``replay``),
a hold persisted but its lost confirm or release not (``ended-once``)."""


_BOUNDS = re.compile(r"(?:reserved|sold) (\d+) outside \[(\d+), (\d+)\]")


def _explained_by_loss(anomaly: Anomaly) -> bool:
    """One of ``LOSS_CHECKS``; a ``bounds`` anomaly only below its lower bound (units
    missing: more held or sold than attempted is no loss, it would be a phantom)."""
    if anomaly.check not in LOSS_CHECKS:
        return False
    if anomaly.check != "bounds":
        return True
    found = _BOUNDS.search(anomaly.detail)
    return found is not None and int(found[1]) < int(found[2])


class FaultUnsupported(RuntimeError):
    """This fault cannot run here (a binary, root or the backend it needs is missing)."""


# ---------------------------------------------------------------------------- processes


def _stockguard() -> list[str]:
    script = Path(sys.executable).with_name("stockguard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stockguard.cli"]


class Serve:
    """``stockguard serve`` in a process group of its own (so SIGKILL takes its workers)."""

    def __init__(self, workdir: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.args = args
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.workdir / f"serve-{self.port}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def start(self, wait: bool = True) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / f"serve-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220, S603 - our own arguments
                [*_stockguard(), "serve", "--port", str(self.port), *self.args],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        if wait:
            await self.wait_healthy()

    async def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_S_MAX
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"serve exited ({self.process.returncode}):\n{self.log()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"serve not healthy in {START_S_MAX} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL to the whole group: the main process and every worker."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class StandalonePersister:
    """``stockguard persist`` in a process group of its own, as an operator runs it beside
    serve (docs/durability.md: one persister works at a time, by lease)."""

    def __init__(self, workdir: Path, db_url: str, redis_url: str, prefix: str) -> None:
        self.workdir = workdir
        self.args = ["persist", "--db", db_url, "--redis", redis_url, "--prefix", prefix]
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, env: dict[str, str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "persist.log").open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own arguments
                [*_stockguard(), *self.args],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.kills += 1


async def _run(*command: str, user: str | None = None, check_ok: bool = True) -> str:
    if user is not None and os.geteuid() == 0:
        command = ("runuser", "-u", user, "--", *command)
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    if check_ok and process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{text}")
    return text


class OwnPostgres:
    """A PostgreSQL instance of the run's own (initdb, pg_ctl) that may be stopped hard."""

    def __init__(self) -> None:
        for binary in ("initdb", "pg_ctl"):
            if shutil.which(binary) is None:
                raise FaultUnsupported(f"{binary} is not installed")
        # Its own directory under /tmp: the postgres user (initdb refuses root) must be
        # able to reach it, which a 0700 parent (pytest's tmp_path) would forbid.
        self.workdir = Path(tempfile.mkdtemp(prefix="stockguard-pg-"))
        self.data = self.workdir / "pgdata"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.stops = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def init(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.workdir, self.user)
        await _run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                   user=self.user)  # fmt: skip
        await self.start()

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=on"
        log = str(self.workdir / "postgres.log")
        await _run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "-t", "60",
                   "start", user=self.user)  # fmt: skip

    async def stop_immediate(self) -> None:
        await _run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                   user=self.user)  # fmt: skip
        self.stops += 1

    async def close(self) -> None:
        await _run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop",
                   user=self.user, check_ok=False)  # fmt: skip
        shutil.rmtree(self.workdir, ignore_errors=True)


AOF_SETTINGS = ("always", "everysec", "no")
"""The durability settings docs/durability.md#what-a-crash-loses states a loss for."""


class OwnRedis:
    """A redis-server of the run's own, with AOF per ``aof`` (``no``: no AOF, no RDB)."""

    def __init__(self, workdir: Path, aof: str = "always") -> None:
        if shutil.which("redis-server") is None:
            raise FaultUnsupported("redis-server is not installed")
        assert aof in AOF_SETTINGS, aof
        self.aof = aof
        self.workdir = workdir
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.kills = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "no"]
            if self.aof == "no"
            else ["--appendonly", "yes", "--appendfsync", self.aof]
        )
        self.process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.workdir), *persistence,
            "--save", "", "--maxmemory-policy", "noeviction",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    await client.ping()
                    return
                except Exception:  # not up yet
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        raise RuntimeError("own redis-server did not start")

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
            self.kills += 1

    async def close(self) -> None:
        await self.kill()


# ---------------------------------------------------------------------------- databases


async def _admin_execute(backend: str, statement: str) -> None:
    url = make_url(SERVER_URLS[backend])
    if backend == "postgres":
        import asyncpg  # type: ignore[import-untyped]

        connection = await asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password,
            database=url.database, timeout=5,
        )  # fmt: skip
        try:
            await connection.execute(statement)
        finally:
            await connection.close()
    else:
        import asyncmy

        connection = await asyncmy.connect(
            host=url.host, port=url.port or 3306, user=url.username or "root",
            password=url.password or "", connect_timeout=5,
        )  # fmt: skip
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(statement)
        finally:
            connection.close()


@contextlib.asynccontextmanager
async def server_database(backend: str) -> AsyncIterator[str]:
    """A new database on the shared PostgreSQL or MariaDB server, dropped afterwards."""
    name = f"sg_verify_{uuid.uuid4().hex[:10]}"
    if backend == "postgres":
        await _admin_execute(backend, f'CREATE DATABASE "{name}"')
    else:
        await _admin_execute(
            backend, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
        )
    try:
        yield (
            make_url(SERVER_URLS[backend]).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        if backend == "postgres":
            await _admin_execute(backend, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            await _admin_execute(backend, f"DROP DATABASE IF EXISTS `{name}`")


def through(url: str, proxy: TcpProxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    return (
        make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )


# ---------------------------------------------------------------------------- runs


@dataclass
class FaultRun:
    fault: str
    backend: str
    strategy: str
    workers: int = 1
    plan: LoadPlan = field(default_factory=LoadPlan)
    interval_s: float = 1.0
    """Time between two injections of the fault (and, for those with a duration, the
    duration of each: a blackhole, a full disk)."""
    interval_ops: int | None = None
    """Inject after every this many operations instead of every ``interval_s`` (the tests:
    the number of injections then depends on the plan, not on the machine's speed)."""
    pool_size: int | None = None
    """serve's database connections per process (``STOCKGUARD_POOL_SIZE``); None: serve's
    default (20). The CI forms use 4: they share one PostgreSQL server with the rest of the
    suite, and ``--workers 2`` or a partition's two serves would open 40 of its 100."""
    injections_max: int | None = None
    """Stop injecting after this many (the tests: an exact count, whatever the harness's
    own operations add to the history)."""
    latency_s: tuple[float, float] = (0.05, 0.5)
    """db-latency: each chunk waits a uniform time in this range, each way."""
    aof: str = "always"
    """redis-restart: the redis-server's persistence, one of ``AOF_SETTINGS``."""
    sweep_kills: bool = False
    """serve-kill on PostgreSQL: the first kill and every second one after it wait until an
    expiry sweep is inside its transaction (blocked on a stock row the harness locks, with
    the load paused); the others land mid-load."""


@dataclass
class FaultResult:
    run: FaultRun
    report: Report
    history: History
    final: FinalState
    injections: int
    wall_s: float
    notes: list[str] = field(default_factory=list)
    loss_bound: int = 0
    """Acknowledged writes the documented bound lets this run lose (docs/durability.md:
    0 but for Redis without AOF, where it is the unpersisted stream tail at each kill plus
    the writes acknowledged between that reading and the kill)."""

    def within_loss_bound(self) -> bool:
        """A run allowed to lose acknowledged writes (Redis without AOF, docs/durability.md):
        no more than its bound, nothing oversold, and every anomaly one a lost write
        explains (``LOSS_CHECKS``); the SQL tables' audit must be clean."""
        report = self.report
        return (
            report.acknowledged_lost <= self.loss_bound
            and report.oversold_units == 0
            and all(
                report.acknowledged_lost and _explained_by_loss(anomaly)
                for anomaly in report.anomalies
            )
        )

    def row(self) -> dict[str, Any]:
        """One row of docs/reliability.md's table."""
        return {
            "fault": self.run.fault,
            "backend": self.run.backend,
            "strategy": self.run.strategy,
            "workers": self.run.workers,
            "clients": self.run.plan.clients,
            "injections": self.injections,
            "ops": self.report.counts.get("total", 0),
            "ok": self.report.counts.get("ok", 0),
            "fail": self.report.counts.get("fail", 0),
            "info": self.report.counts.get("info", 0),
            "acknowledged_lost": self.report.acknowledged_lost,
            "oversold": self.report.oversold_units,
            "loss_bound": self.loss_bound,
            "anomalies": self.report.by_check(),
            "valid": self.report.valid,
            "wall_s": round(self.wall_s, 1),
        }


class _Rig:
    """Everything one run started, so that it is all stopped whatever happens."""

    def __init__(self, run: FaultRun, workdir: Path) -> None:
        self.run = run
        self.workdir = workdir
        self.serves: list[Serve] = []
        self.proxy: TcpProxy | None = None
        self.postgres: OwnPostgres | None = None
        self.redis: OwnRedis | None = None
        self.redis_prefix: str | None = None
        self.redis_url: str | None = None
        self.mount: Path | None = None
        self.db_url: str | None = None
        self.persister: StandalonePersister | None = None
        self.load: Load | None = None
        self.tails: list[tuple[float, float, int]] = []
        """redis-restart without AOF: (reading, kill) times and the stream's length read
        just before each kill (an upper bound of the events not yet in SQL)."""
        self.injections = 0
        self.notes: list[str] = []
        self.stack = contextlib.AsyncExitStack()

    def serve_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKGUARD_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            {
                "XDG_STATE_HOME": str(self.workdir / "state"),
                "STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN,
                "STOCKGUARD_AUDIT_INTERVAL_S": "0",
                "STOCKGUARD_DATABASE_WAIT_S": "30",
            }
        )
        if self.redis_prefix is not None:
            env["STOCKGUARD_REDIS_PREFIX"] = self.redis_prefix
        if self.run.pool_size is not None:
            env["STOCKGUARD_POOL_SIZE"] = str(self.run.pool_size)
        return env

    def serve_args(self, db_url: str) -> list[str]:
        args = ["--db", db_url, "--strategy", self.run.strategy, "--workers",
                str(self.run.workers), "--sweep-interval-s", "0.5"]  # fmt: skip
        if self.redis_url is not None:
            args += ["--redis-url", self.redis_url]
        return args

    async def database(self) -> str:
        """The database serve uses (before any proxy)."""
        run = self.run
        if run.fault == "pg-restart":
            if run.backend != "postgres":
                raise FaultUnsupported("pg-restart needs --backend postgres")
            self.postgres = OwnPostgres()
            await self.postgres.init()
            self.stack.push_async_callback(self.postgres.close)
            return self.postgres.url
        if run.backend == "sqlite":
            directory = self.workdir / "sqlite"
            if run.fault == "disk-full":
                directory = await self._tmpfs(directory)
            directory.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{directory / 'stockguard.db'}"
        if run.fault == "disk-full":
            raise FaultUnsupported("disk-full runs on SQLite only")
        return await self.stack.enter_async_context(server_database(run.backend))

    async def _tmpfs(self, directory: Path) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            raise FaultUnsupported("disk-full needs root (mount -t tmpfs)")
        directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before the load
        await _run("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(directory))
        self.mount = directory

        async def unmount() -> None:
            await _run("umount", "-l", str(directory), check_ok=False)

        self.stack.push_async_callback(unmount)
        return directory

    async def start(self) -> None:
        run = self.run
        needs_redis = "redis" in strategies.strategy_class(run.strategy).requires
        if run.fault == "persister-kill" and run.strategy != "redis":
            raise FaultUnsupported("persister-kill needs --strategy redis")
        if run.fault == "redis-restart":
            if run.strategy not in ("redis", "queue"):
                raise FaultUnsupported("redis-restart needs --strategy redis or queue")
            self.redis = OwnRedis(self.workdir / "redis", run.aof)
            await self.redis.start()
            self.stack.push_async_callback(self.redis.close)
            self.redis_url = self.redis.url
        elif needs_redis:
            self.redis_url = REDIS_URL
        if needs_redis:
            self.redis_prefix = f"sg-verify-{uuid.uuid4().hex[:10]}"
            self.stack.push_async_callback(self._drop_keyspace)
        db_url = await self.database()
        self.db_url = db_url
        if run.fault == "persister-kill":
            await self._start_persister(db_url)
        if run.fault in ("db-reset", "db-latency", "partition"):
            if run.backend == "sqlite":
                raise FaultUnsupported(f"{run.fault} needs a server database")
            url = make_url(db_url)
            self.proxy = TcpProxy(url.host or "127.0.0.1", url.port or 0)
            await self.proxy.start()
            self.stack.push_async_callback(self.proxy.close)
        direct = db_url
        proxied = through(db_url, self.proxy) if self.proxy is not None else db_url
        env = self.serve_env()
        first = Serve(self.workdir / "serve-a", self.serve_args(
            direct if run.fault == "partition" else proxied), env)  # fmt: skip
        self.serves.append(first)
        if run.fault == "partition":
            self.serves.append(Serve(self.workdir / "serve-b", self.serve_args(proxied), env))
        for serve in self.serves:
            # Killed, not stopped, once the run is checked: a graceful stop (the redis
            # strategy lets its persister catch up first) is seconds of waiting that prove
            # nothing here, and every serve of a run is a process group of the harness's.
            self.stack.callback(serve.kill)
            await serve.start(wait=False)
        # Together: a start-up is seconds of imports, and a partition run has two serves.
        await asyncio.gather(*(serve.wait_healthy() for serve in self.serves))

    async def _start_persister(self, db_url: str) -> None:
        """The keyspace loaded from SQL (what ``stockguard reconcile`` does on an empty one),
        then ``stockguard persist`` until it holds the lease: serve's own persister, started
        after, waits for it, so the process killed is the one doing the work."""
        assert self.redis_url is not None
        assert self.redis_prefix is not None
        import redis.asyncio as aioredis

        from stockguard.stores.redis.commands import run_reconcile
        from stockguard.stores.redis.keys import KeyLayout

        await run_reconcile(db_url, self.redis_url, self.redis_prefix, repair=False)
        self.persister = StandalonePersister(
            self.workdir / "persist", db_url, self.redis_url, self.redis_prefix
        )
        self.persister.start(self.serve_env())
        self.stack.callback(self.persister.kill)
        client = aioredis.Redis.from_url(self.redis_url)
        try:
            deadline = time.monotonic() + START_S_MAX
            while not await client.exists(KeyLayout(self.redis_prefix).persister_lease):
                if time.monotonic() > deadline:
                    raise RuntimeError("stockguard persist did not take the lease")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def begin(self) -> None:
        """The faults that last the whole load start here (after the stock is set)."""
        if self.run.fault == "db-latency" and self.proxy is not None:
            self.proxy.latency_s = self.run.latency_s

    async def _drop_keyspace(self) -> None:
        if self.redis_url is None or self.redis_prefix is None:
            return
        from stockguard.stores.redis.client import drop_keyspace

        with contextlib.suppress(Exception):
            await drop_keyspace(self.redis_url, self.redis_prefix)

    # ------------------------------------------------------------------ faults

    async def inject_forever(self, stop: asyncio.Event, load: Load) -> None:
        """Breaks something every ``interval_s`` (or every ``interval_ops`` operations of
        ``load`` that reached the service since the load began) until ``stop`` is set or
        ``injections_max`` were made."""
        action = self._actions().get(self.run.fault)
        if action is None:
            await stop.wait()
            return
        every, limit = self.run.interval_ops, self.run.injections_max
        # From here: the stock setup's PUTs are retried when they time out on a loaded
        # machine, and must not move the schedule.
        start = load.reached()
        while not stop.is_set():
            if limit is not None and self.injections >= limit:
                await stop.wait()
                return
            if every is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.run.interval_s)
            else:
                due = start + (self.injections + 1) * every
                while load.reached() < due and not stop.is_set():  # noqa: ASYNC110 - polls
                    await asyncio.sleep(0.01)
            if stop.is_set():
                return
            await action()
            self.injections += 1

    def _actions(self) -> dict[str, Callable[[], Awaitable[None]]]:
        return {
            "db-reset": self._reset,
            "serve-kill": self._kill_serve,
            "pg-restart": self._restart_postgres,
            "redis-restart": self._restart_redis,
            "persister-kill": self._kill_persister,
            "disk-full": self._fill_disk,
            "partition": self._partition,
        }

    async def _reset(self) -> None:
        assert self.proxy is not None
        self.proxy.reset_all()

    async def _kill_serve(self) -> None:
        serve = self.serves[0]
        if self.run.sweep_kills and self.injections % 2 == 0:
            await self._kill_serve_in_sweep()
        else:
            serve.kill()
        await serve.start()

    async def _kill_serve_in_sweep(self) -> None:
        """SIGKILL while an expiry sweep is inside its transaction (PostgreSQL).

        The load pauses (so no request is in flight), the harness makes one 1 s hold per
        SKU, then locks every SKU's stock row in a transaction of its own. The sweep (the
        sweeper of docs/design.md#reservation-lifecycle; ``expire_due`` in
        stores/operations.py marks due rows expired, then locks their stock rows and moves
        them) blocks on that lock with its reservations already marked: the only serve
        connection waiting on a lock while nothing else runs. serve is killed then; the
        database rolls the sweep back, and the next serve's sweep ends those holds.
        """
        if self.run.backend != "postgres" or self.load is None:
            raise FaultUnsupported("a kill inside the sweep needs --backend postgres")
        import asyncpg

        load, serve = self.load, self.serves[0]
        skus = self.run.plan.sku_names()
        await load.pause()
        try:
            held = await load.hold_as(self.run.plan.clients, [
                {"order_id": f"sweep-{self.injections}-{sku}",
                 "items": [{"sku": sku, "quantity": 1}], "ttl_seconds": 1}
                for sku in skus
            ])  # fmt: skip
            if not any(op.ok for op in held):
                self.notes.append("sweep kill: no hold could be made; killed outside a sweep")
                serve.kill()
                return
            assert self.db_url is not None
            url = make_url(self.db_url)
            locker = await asyncpg.connect(
                host=url.host, port=url.port or 5432, user=url.username,
                password=url.password, database=url.database, timeout=5,
            )  # fmt: skip
            try:
                lock = locker.transaction()
                await lock.start()
                await locker.execute(
                    "SELECT sku FROM stock_levels WHERE sku = ANY($1::text[]) FOR UPDATE", skus
                )
                deadline = time.monotonic() + START_S_MAX
                # The sweep: waiting on a lock, with its UPDATE of reservations done (it
                # holds RowExclusiveLock on the table; pg_stat_activity's query text is not
                # reliable here, it may still show the connection's previous statement).
                while not await locker.fetchval(SWEEP_WAITING, url.database):
                    if time.monotonic() > deadline:
                        raise RuntimeError("no expiry sweep reached the locked stock rows")
                    await asyncio.sleep(0.02)
                serve.kill()
                self.notes.append(
                    f"kill {self.injections + 1}: inside an expiry sweep (due holds marked "
                    "expired, waiting on a stock row lock)"
                )
                await lock.rollback()
            finally:
                await locker.close()
        finally:
            load.resume()

    async def _kill_persister(self) -> None:
        assert self.persister is not None
        self.persister.kill()
        self.persister.start(self.serve_env())

    async def _restart_postgres(self) -> None:
        assert self.postgres is not None
        await self.postgres.stop_immediate()
        await asyncio.sleep(0.3)
        await self.postgres.start()

    async def _restart_redis(self) -> None:
        assert self.redis is not None
        if self.redis.aof == "no":
            read_s, tail = time.monotonic(), await self._stream_length()
            await self.redis.kill()
            self.tails.append((read_s, time.monotonic(), tail))
        else:
            await self.redis.kill()
        await asyncio.sleep(0.2)
        await self.redis.start()
        if self.redis.aof == "no":
            # Restarted empty: every call answers 503 until an operator reloads it
            # (docs/durability.md#how-a-restart-is-recovered), as `stockguard reconcile` does.
            from stockguard.stores.redis.commands import run_reconcile

            assert self.db_url is not None
            assert self.redis_prefix is not None
            report = await run_reconcile(self.db_url, self.redis.url, self.redis_prefix, False)
            self.notes.append(f"reconcile after kill {self.injections + 1}: {report.loaded}")

    async def _stream_length(self) -> int:
        """The event stream's length: every event not yet in SQL, plus at most the last
        persisted one and a batch committed but not yet trimmed (persister.py)."""
        assert self.redis is not None
        assert self.redis_prefix is not None
        import redis.asyncio as aioredis

        from stockguard.stores.redis.keys import KeyLayout

        client = aioredis.Redis.from_url(self.redis.url)
        try:
            return int(await client.xlen(KeyLayout(self.redis_prefix).events))
        finally:
            await client.aclose()

    def loss_bound(self, history: History) -> int:
        """What docs/durability.md lets this run lose: for each kill of a Redis without
        AOF, the stream's length read before it, plus writes acknowledged between that
        reading and the kill (appended after it). 0 for every other fault."""
        bound = 0
        writes = (Kind.HOLD, Kind.CONFIRM, Kind.RELEASE, Kind.ADJUST)
        for read_s, killed_s, tail in self.tails:
            late = [op for op in history.of_kind(*writes) if op.ok and op.complete_s is not None
                    and read_s <= op.complete_s <= killed_s]  # fmt: skip
            bound += tail + len(late)
        return bound

    async def _fill_disk(self) -> None:
        assert self.mount is not None
        filler = self.mount / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:
            chunk = b"\0" * (1 << 20)
            while True:
                out.write(chunk)
                out.flush()
        with contextlib.suppress(OSError), filler.open("ab") as out:
            while True:  # the last bytes
                out.write(b"\0" * 4096)
                out.flush()
        await asyncio.sleep(self.run.interval_s)
        filler.unlink(missing_ok=True)

    async def _partition(self) -> None:
        assert self.proxy is not None
        self.proxy.blackhole = True
        await asyncio.sleep(self.run.interval_s)
        self.proxy.blackhole = False

    async def heal(self) -> None:
        if self.proxy is not None:
            self.proxy.blackhole = False
            self.proxy.latency_s = (0.0, 0.0)
        if self.mount is not None:
            (self.mount / "filler").unlink(missing_ok=True)
        for serve in self.serves:
            if not serve.alive():
                await serve.start()
            await serve.wait_healthy()


async def run_fault(run: FaultRun, workdir: Path) -> FaultResult:
    """One run: start, load under the fault, heal, read the final state, check."""
    started_s = time.monotonic()
    rig = _Rig(run, workdir)
    async with rig.stack:
        await rig.start()
        urls = [serve.url for serve in rig.serves]
        load = Load(urls, ADMIN_TOKEN, run.plan)
        rig.load = load
        await load.setup()
        rig.begin()
        stop = asyncio.Event()
        injector = asyncio.create_task(rig.inject_forever(stop, load))
        try:
            history = await load.run()
        finally:
            stop.set()
            await injector
        await rig.heal()
        # Holds of 1 s expire, and the sweeper (every 0.5 s) ends them before the reading.
        await asyncio.sleep(1.5)
        final = await read_final(urls[0], ADMIN_TOKEN, run.plan.sku_names())
        history.meta = {
            "fault": run.fault,
            "backend": run.backend,
            "strategy": run.strategy,
            "workers": run.workers,
            "clients": run.plan.clients,
            "injections": rig.injections,
        }
        report = check(history, final)
        return FaultResult(
            run, report, history, final, rig.injections, time.monotonic() - started_s,
            rig.notes, rig.loss_bound(history),
        )  # fmt: skip
