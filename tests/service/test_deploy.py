"""The recipes of docs/deploy.md, run for real: the systemd unit (``systemd-analyze
verify``, then its command with the environment systemd gives it), nginx with TLS in
front of ``serve --workers 2`` (a self-signed certificate made here with openssl; the
admin cookie is ``Secure``), and backup and restore of SQLite (``stockguard backup``,
SQLite's online backup API) and PostgreSQL (``pg_dump`` / ``pg_restore``), each restore
passing ``stockguard audit``."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import ssl
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url

from stockguard.config import Settings

from .support import (
    ADMIN_TOKEN,
    AppFactory,
    Served,
    bearer,
    free_port,
    run_command,
    stockguard_command,
)
from .test_behind_nginx import GUARD_S, START_S_MAX, _nginx, _rewritten

Serve = Callable[..., AbstractContextManager[Served]]
DEPLOY = Path(__file__).parents[2] / "deploy"


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian: apt-get install {package})"
        if os.environ.get("STOCKGUARD_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _marked(text: str, marker: str, line: str) -> str:
    """The line after ``# stockguard: marker`` (systemd) replaced by ``line``."""
    text, count = re.subn(rf"^(# stockguard: {marker}\n)[^\n]*$", rf"\g<1>{line}", text, flags=re.M)
    assert count == 1, marker
    return text


def _toml(text: str, marker: str, line: str) -> str:
    text, count = re.subn(rf"^\S.*# stockguard: {marker}$", line, text, flags=re.M)
    assert count == 1, marker
    return text


def _stockguard() -> str:
    command = stockguard_command()
    assert len(command) == 1, "the console script is not installed"
    return command[0]


# ---------------------------------------------------------------------------- systemd


def test_the_systemd_unit_verifies_and_its_command_serves(serve: Serve, tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze", "systemd")
    user = getpass.getuser()
    config = tmp_path / "stockguard.toml"
    config.write_text(
        _toml(
            (DEPLOY / "systemd" / "stockguard.toml").read_text(),
            "database",
            f'database_url = "sqlite:///{tmp_path}/shop.db"',
        )
    )
    Settings.load(config)  # every key of the shipped file is a setting
    unit = (DEPLOY / "systemd" / "stockguard.service").read_text()
    for marker, line in {
        "user": f"User={user}",
        "group": f"Group={user}",
        "workdir": f"WorkingDirectory={tmp_path}",
        "config": f"Environment=STOCKGUARD_CONFIG={config}",
        "exec": f"ExecStart={_stockguard()} serve",
    }.items():
        unit = _marked(unit, marker, line)
    unit_file = tmp_path / "stockguard.service"
    unit_file.write_text(unit)
    verified = subprocess.run(
        [analyze, "verify", str(unit_file)], capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "stockguard.service" not in verified.stderr, verified.stderr

    # What systemd runs: ExecStart with STOCKGUARD_CONFIG and StateDirectory's variable.
    state = tmp_path / "state"
    env = {"STOCKGUARD_CONFIG": str(config), "STATE_DIRECTORY": str(state)}
    with serve(env=env) as served:
        assert httpx.get(f"{served.url}/healthz").status_code == 200
        token_file = state / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert f"generated in {token_file}" in served.output()
        assert token_file.read_text().strip() not in served.output()
        assert served.stop() == 0


# ---------------------------------------------------------------------------- TLS


@contextmanager
def nginx_with_tls(served: Served, run_dir: Path) -> Iterator[tuple[str, Path]]:
    """The shipped nginx config with the two TLS lines docs/deploy.md adds."""
    openssl = _tool("openssl", "openssl")
    binary = _nginx()
    run_dir.mkdir()
    (run_dir / "logs").mkdir()
    cert, key = run_dir / "cert.pem", run_dir / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    text = _rewritten(urlsplit(served.url).port or 0, port, run_dir)
    plain = f"listen 127.0.0.1:{port};"
    assert plain in text
    text = text.replace(
        plain,
        f"listen 127.0.0.1:{port} ssl;\n"
        f"        ssl_certificate {cert};\n"
        f"        ssl_certificate_key {key};",
    )
    config = run_dir / "nginx.conf"
    config.write_text(text)
    process = subprocess.Popen(
        [binary, "-p", str(run_dir), "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S_MAX
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if (
                    httpx.get(
                        url + "/healthz",
                        verify=ssl.create_default_context(cafile=cert),
                        timeout=1.0,
                    ).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "nginx did not come up"
            time.sleep(0.1)
        yield url, cert
    finally:
        process.terminate()
        process.wait(GUARD_S)


def test_nginx_with_tls_in_front_of_two_workers_sets_a_secure_admin_cookie(
    serve: Serve, tmp_path: Path
) -> None:
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN, "STOCKGUARD_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with (
        serve("--db", f"sqlite:///{tmp_path}/tls.db", "--workers", "2", env=env) as served,
        nginx_with_tls(served, tmp_path / "nginx") as (url, cert),
        httpx.Client(
            base_url=url, verify=ssl.create_default_context(cafile=cert), timeout=GUARD_S
        ) as client,
    ):
        stock = client.put("/v1/stock/A", json={"on_hand": 1}, headers=bearer(ADMIN_TOKEN))
        assert stock.status_code == 200, stock.text
        held = client.post(
            "/v1/reservations", json={"order_id": "tls-1", "items": [{"sku": "A", "quantity": 1}]}
        )
        assert held.status_code == 201, held.text

        signed_in = client.post(
            "/admin/sign-in", data={"token": ADMIN_TOKEN}, headers={"Origin": url}
        )
        assert signed_in.status_code == 303, signed_in.text
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith("stockguard_admin=")
        assert "; secure" in cookie.lower(), cookie
        assert "httponly" in cookie.lower()
        page = client.get("/admin")  # the cookie came back over https: a session
        assert page.status_code == 200
        assert "A" in page.text


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("trusted", "forwarded", "secure"),
    [
        ("", "https", False),  # no proxy configured: the header is nobody's word
        ("10.9.8.7", "https", False),  # a header from an address that is not the proxy
        ("127.0.0.0/8", "http", False),  # the proxy says plain http
        ("127.0.0.1", "https", True),
        ("::1, 127.0.0.1", "https,http", True),  # the first (client-facing) hop counts
    ],
)
async def test_x_forwarded_proto_is_believed_only_from_a_configured_proxy(
    make_api: AppFactory,
    trusted: str,
    forwarded: str,
    secure: bool,
) -> None:
    """In-process (httpx's ASGI transport is the client 127.0.0.1)."""
    async with make_api(forwarded_allow_ips=trusted) as api:
        answer = await api.client.post(
            "/admin/sign-in",
            data={"token": ADMIN_TOKEN},
            headers={"Origin": "http://stockguard.test", "X-Forwarded-Proto": forwarded},
        )
        assert answer.status_code == 303, answer.text
        assert ("; secure" in answer.headers["set-cookie"].lower()) is secure


def test_a_proxy_address_that_is_not_one_is_an_invalid_setting(tmp_path: Path) -> None:
    done = run_command(tmp_path, "serve", env={"STOCKGUARD_FORWARDED_ALLOW_IPS": "nginx.local"})
    assert done.returncode == 2
    assert "forwarded_allow_ips" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------- backups


def _sell(client: httpx.Client, order_id: str, sku: str = "A") -> str:
    held = client.post(
        "/v1/reservations", json={"order_id": order_id, "items": [{"sku": sku, "quantity": 1}]}
    )
    assert held.status_code == 201, held.text
    return str(held.json()["id"])


def test_sqlite_online_backup_and_restore_pass_the_audit(serve: Serve, tmp_path: Path) -> None:
    database = tmp_path / "shop.db"
    url = f"sqlite:///{database}"
    backup = tmp_path / "backup" / "shop-backup.db"
    backup.parent.mkdir()
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN}
    with serve("--db", url, env=env) as served, httpx.Client(base_url=served.url) as client:
        assert client.put("/v1/stock/A", json={"on_hand": 10}, headers=bearer(ADMIN_TOKEN))
        confirmed = _sell(client, "o-1")
        assert client.post(f"/v1/reservations/{confirmed}/confirm").status_code == 200
        _sell(client, "o-2")

        done = run_command(tmp_path, "backup", str(backup), "--db", url)  # while serving
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"backed up {database} to {backup}\n"
        again = run_command(tmp_path, "backup", str(backup), "--db", url)
        assert again.returncode == 2 and "never overwrites" in again.stderr

        _sell(client, "o-3")  # after the backup: not in it
        assert served.stop() == 0

    # Restore: serve stopped, the backup copied over the database and its WAL files.
    for leftover in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(backup, database)
    audited = run_command(tmp_path, "audit", "--db", url)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert audited.stdout == "audit: 1 SKU(s), invariants I1-I4 hold, 0 oversold\n"
    with serve("--db", url, env=env) as served, httpx.Client(base_url=served.url) as client:
        stock = client.get("/v1/stock/A").json()
        assert (stock["on_hand"], stock["reserved"]) == (9, 1)  # o-1 sold, o-2 held; no o-3


def test_backup_of_a_server_database_points_to_its_tool(tmp_path: Path) -> None:
    done = run_command(tmp_path, "backup", "x.db", "--db", "postgresql://u@127.0.0.1/db")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "  fix: pg_dump -Fc (PostgreSQL) or mariadb-dump --single-transaction (MariaDB)"
    )


@pytest.mark.parametrize("backend", ["postgres"])
def test_postgres_dump_and_restore_pass_the_audit(
    serve: Serve, db_url: str, tmp_path: Path
) -> None:
    pg_dump = _tool("pg_dump", "postgresql-client")
    pg_restore = _tool("pg_restore", "postgresql-client")
    psql = _tool("psql", "postgresql-client")
    env = {"STOCKGUARD_ADMIN_TOKEN": ADMIN_TOKEN, "STOCKGUARD_POOL_SIZE": "4"}
    dump = tmp_path / "stockguard.dump"
    with serve("--db", db_url, env=env) as served, httpx.Client(base_url=served.url) as client:
        assert client.put("/v1/stock/PG", json={"on_hand": 5}, headers=bearer(ADMIN_TOKEN))
        confirmed = _sell(client, "pg-1", "PG")
        assert client.post(f"/v1/reservations/{confirmed}/confirm").status_code == 200
        _sell(client, "pg-2", "PG")
        libpq = make_url(db_url).render_as_string(hide_password=False)
        # While serving: pg_dump reads one consistent snapshot.
        subprocess.run([pg_dump, "-Fc", "-d", libpq, "-f", str(dump)], check=True)
        expected = client.get("/v1/stock/PG").json()

    restored_name = f"sg_restore_{uuid.uuid4().hex[:8]}"
    server = make_url(db_url).set(database="postgres").render_as_string(hide_password=False)
    restored = make_url(db_url).set(database=restored_name).render_as_string(hide_password=False)
    subprocess.run(
        [psql, "-q", "-d", server, "-c", f'CREATE DATABASE "{restored_name}"'], check=True
    )
    try:
        subprocess.run(
            [pg_restore, "--no-owner", "--exit-on-error", "-d", restored, str(dump)], check=True
        )
        audited = run_command(tmp_path, "audit", "--db", restored)
        assert audited.returncode == 0, audited.stdout + audited.stderr
        assert "invariants I1-I4 hold, 0 oversold" in audited.stdout
        with serve("--db", restored, env=env) as served:
            stock = httpx.get(f"{served.url}/v1/stock/PG").json()
            assert (stock["on_hand"], stock["reserved"]) == (expected["on_hand"], 1)
            assert stock["on_hand"] == 4
    finally:
        subprocess.run(
            [
                psql,
                "-q",
                "-d",
                server,
                "-c",
                f'DROP DATABASE IF EXISTS "{restored_name}" WITH (FORCE)',
            ],
            check=True,
        )
