"""Migrations from many hosts at once: four ``stockguard migrate`` processes started
together on one empty database all succeed, the schema ends at head exactly once, and
``migrate --check`` tells a deploy pipeline whether a database needs migrating."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import _create_server_database, _drop_server_database
from stockguard.stores.migrations import LOCK_KEY, head_revision
from stockguard.stores.sql.backend import backend_for

PROCESSES = 4
RUN_S_MAX = 300


def stockguard(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("stockguard")
    return (
        [str(script), *args] if script.exists() else [sys.executable, "-m", "stockguard.cli", *args]
    )


async def run(*args: str) -> tuple[int, str]:
    """One ``stockguard`` process: its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        *stockguard(*args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), RUN_S_MAX)
    return int(process.returncode or 0), out.decode(errors="replace")


@pytest.fixture
async def empty_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/empty.db"
        return
    name = f"sg_migrate_{uuid.uuid4().hex[:10]}"
    url = await _create_server_database(backend, name)
    try:
        yield url
    finally:
        await _drop_server_database(backend, name)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_four_hosts_migrating_one_empty_database_at_once_migrate_it_once(
    empty_url: str,
) -> None:
    assert (await run("migrate", "--check", "--db", empty_url))[0] == 1

    hosts = await asyncio.gather(*(run("migrate", "--db", empty_url) for _ in range(PROCESSES)))
    for code, output in hosts:
        assert code == 0, output[-3000:]

    assert (await run("migrate", "--check", "--db", empty_url))[0] == 0
    engine = create_async_engine(backend_for(empty_url).url)
    try:
        async with engine.connect() as connection:
            versions = (
                await connection.execute(text("SELECT version_num FROM alembic_version"))
            ).all()
    finally:
        await engine.dispose()
    assert [row[0] for row in versions] == [head_revision()]


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_host_waits_for_the_migration_lock_another_holds(empty_url: str) -> None:
    """While the lock is held (here by the test, as by a host migrating), ``migrate``
    waits on it — seen in ``pg_locks``, not timed — and migrates once it is free."""
    engine = create_async_engine(backend_for(empty_url).url)
    try:
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            host = asyncio.create_task(run("migrate", "--db", empty_url))
            waiting = 0
            for _ in range(600):  # bounded: the process needs a moment to start
                waiting = (
                    await holder.execute(
                        text(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND NOT granted AND objid = :key"
                        ),
                        {"key": LOCK_KEY},
                    )
                ).scalar_one()
                if waiting or host.done():
                    break
                await asyncio.sleep(0.1)
            assert waiting == 1, "migrate did not wait for the lock"
            assert not host.done()
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            await holder.commit()
        code, output = await host
    finally:
        await engine.dispose()
    assert code == 0, output[-3000:]
