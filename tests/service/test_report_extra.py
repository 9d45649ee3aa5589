"""A default install has no matplotlib (it is the ``report`` extra): the command still
runs, and ``bench --report`` / ``loadtest --report`` say how to get it before doing any
work. matplotlib is hidden with a ``sitecustomize`` (see test_startup.hide_modules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import run_command
from .test_startup import hide_modules


def test_the_command_runs_without_matplotlib(tmp_path: Path) -> None:
    done = run_command(tmp_path, "--help", env=hide_modules(tmp_path, "matplotlib"))
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout


@pytest.mark.parametrize(
    ("command", "args"),
    [("bench", ["--requests", "10", "--workload", "flash"]), ("loadtest", [])],
)
def test_report_without_matplotlib_names_the_extra(
    tmp_path: Path, command: str, args: list[str]
) -> None:
    report = tmp_path / "report"
    done = run_command(
        tmp_path,
        command,
        *args,
        "--report",
        str(report),
        env=hide_modules(tmp_path, "matplotlib"),
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-2:] == [
        f"stockguard: {command} --report draws its plots with matplotlib, which is not installed",
        "  fix: pip install 'stockguard[report]'",
    ]
    assert not report.exists()
