"""Start-up failures of ``stockguard serve``, as an operator meets them: the real command
in a subprocess, judged on its output and exit code. Each failure is one line saying what
is wrong plus one line with the fix, an exit code of its own, and no traceback
(service/startup.py); a port conflict is found before any admin token is made.

A missing optional package is simulated with a ``sitecustomize`` that marks the module
absent (``sys.modules[name] = None``: both ``import`` and ``find_spec`` then say it is not
installed), so the test does not have to uninstall anything.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from stockguard.service import startup

from .support import free_port, run_command


def hide_modules(tmp_path: Path, *names: str) -> dict[str, str]:
    """An environment in which ``names`` are not installed."""
    site = tmp_path / "hidden-site"
    site.mkdir()
    lines = ["import sys", *(f"sys.modules[{name!r}] = None" for name in names)]
    (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    return {"PYTHONPATH": str(site)}


def assert_one_failure(output: str, code: int, returncode: int) -> list[str]:
    """One 'stockguard: …' line and its 'fix:' line (after countdown lines, if any)."""
    assert returncode == code, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert lines[-1].startswith("  fix: "), output
    assert lines[-2].startswith("stockguard: "), output
    return lines


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    done = run_command(tmp_path, "serve", *args, env=env)
    return done.stdout + done.stderr, done.returncode


def test_a_missing_postgres_driver_names_the_extra(tmp_path: Path) -> None:
    output, code = serve(
        tmp_path,
        "--db",
        "postgresql://postgres@127.0.0.1:5432/test",
        env=hide_modules(tmp_path, "asyncpg"),
    )
    lines = assert_one_failure(output, startup.EXIT_MISSING_PACKAGE, code)
    assert lines == [
        "stockguard: the postgresql database needs the asyncpg driver, which is not installed",
        "  fix: pip install 'stockguard[postgres]'",
    ]


def test_a_missing_mysql_driver_names_the_extra(tmp_path: Path) -> None:
    output, code = serve(
        tmp_path, "--db", "mysql://root@127.0.0.1:3306/test", env=hide_modules(tmp_path, "asyncmy")
    )
    lines = assert_one_failure(output, startup.EXIT_MISSING_PACKAGE, code)
    assert lines[-1] == "  fix: pip install 'stockguard[mysql]'"


def test_a_missing_redis_client_names_the_extra(tmp_path: Path) -> None:
    output, code = serve(
        tmp_path,
        "--strategy",
        "redis",
        "--redis-url",
        "redis://127.0.0.1:6379/0",
        env=hide_modules(tmp_path, "redis"),
    )
    lines = assert_one_failure(output, startup.EXIT_MISSING_PACKAGE, code)
    assert lines[-1] == "  fix: pip install 'stockguard[redis]'"


@pytest.mark.parametrize("strategy", ["redis", "queue"])
def test_a_missing_redis_url_names_the_flag_and_the_variable(tmp_path: Path, strategy: str) -> None:
    output, code = serve(tmp_path, "--strategy", strategy)
    lines = assert_one_failure(output, startup.EXIT_MISSING_SETTING, code)
    assert lines[0] == f"stockguard: strategy {strategy} needs a Redis URL and none is set"
    assert "--redis-url" in lines[1]
    assert "STOCKGUARD_REDIS_URL" in lines[1]


def test_an_unreachable_database_is_retried_with_a_countdown_then_named(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    output, code = serve(
        tmp_path,
        "--db",
        f"postgresql://postgres@127.0.0.1:{port}/test",
        env={"STOCKGUARD_DATABASE_WAIT_S": "1"},
    )
    lines = assert_one_failure(output, startup.EXIT_DATABASE, code)
    countdown = lines[:-2]
    assert countdown, output
    assert all(
        line.startswith(f"stockguard: database 127.0.0.1:{port} not reachable") and "s left" in line
        for line in countdown
    ), output
    assert lines[-2] == (
        f"stockguard: cannot reach the database at 127.0.0.1:{port}: connection refused "
        "(tried for 1 s)"
    )
    assert "STOCKGUARD_DATABASE_URL" in lines[-1]


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_database_that_refuses_the_login_fails_at_once(tmp_path: Path, db_url: str) -> None:
    """The server answered: waiting will not help, so no countdown."""
    url = make_url(db_url).set(username="no_such_role_stockguard")
    output, code = serve(
        tmp_path,
        "--db",
        url.render_as_string(hide_password=False),
        env={"STOCKGUARD_DATABASE_WAIT_S": "30"},
    )
    lines = assert_one_failure(output, startup.EXIT_DATABASE, code)
    assert len(lines) == 2, output
    assert "no_such_role_stockguard" in lines[0]
    assert "user, password and database name" in lines[1]


def test_a_port_in_use_is_said_before_any_token_is_made(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output, code = serve(tmp_path, "--port", str(port), "--db", f"sqlite:///{tmp_path}/a.db")
    lines = assert_one_failure(output, startup.EXIT_PORT, code)
    assert lines[0] == f"stockguard: port {port} on 127.0.0.1 is already in use by another process"
    assert "--port" in lines[1]
    assert "token" not in output
    assert not (tmp_path / "state").exists()  # no admin token was generated
    assert not (tmp_path / "a.db").exists()  # nor the database touched


def test_an_unknown_strategy_is_one_line(tmp_path: Path) -> None:
    output, code = serve(tmp_path, "--strategy", "nope")
    assert code == startup.EXIT_SETTINGS, output
    assert "Traceback" not in output
    assert output.startswith("stockguard: invalid setting strategy: Value error, unknown strategy")
    assert len(output.strip().splitlines()) == 1


def test_an_unwritable_data_directory_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    output, code = serve(
        tmp_path, "--db", f"sqlite:///{tmp_path}/a.db", "--data-dir", str(blocker / "data")
    )
    lines = assert_one_failure(output, startup.EXIT_DATA_DIR, code)
    assert str(blocker / "data" / "admin-token") in lines[0]
    assert "STOCKGUARD_DATA_DIR" in lines[1]


def test_admin_token_is_made_once_with_mode_0600_and_rotates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = run_command(tmp_path, "admin-token", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert len(token) >= 40
    token_file = data / "admin-token"
    assert f"generated in {token_file}" in first.stderr
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700

    again = run_command(tmp_path, "admin-token", env={"STOCKGUARD_DATA_DIR": str(data)})
    assert again.stdout.strip() == token
    assert f"kept in {token_file}" in again.stderr

    rotated = run_command(tmp_path, "admin-token", "--rotate", "--data-dir", str(data))
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip() not in ("", token)
    assert token_file.read_text().strip() == rotated.stdout.strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert "restart serve" in rotated.stderr


def test_admin_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_command(tmp_path, "admin-token", "--data-dir", str(data)).returncode == 0
    os.chmod(data / "admin-token", 0o644)
    output, code = serve(tmp_path, "--db", f"sqlite:///{tmp_path}/a.db", "--data-dir", str(data))
    lines = assert_one_failure(output, startup.EXIT_DATA_DIR, code)
    assert "may be read by other users (mode 644)" in lines[0]
    assert lines[1].startswith(f"  fix: chmod 600 {data / 'admin-token'}")


def test_admin_token_configured_is_not_shown(tmp_path: Path) -> None:
    done = run_command(tmp_path, "admin-token", env={"STOCKGUARD_ADMIN_TOKEN": "s3cret-token"})
    assert done.returncode == startup.EXIT_SETTINGS
    assert "s3cret-token" not in done.stdout + done.stderr
    assert "configured" in done.stderr


def test_version(tmp_path: Path) -> None:
    from stockguard import __version__

    done = run_command(tmp_path, "--version")
    assert done.returncode == 0
    assert done.stdout == f"stockguard {__version__}\n"
