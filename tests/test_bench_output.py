"""What ``stockguard bench`` shows a person: the terminal table at 100 columns, progress
when piped, and the HTML report's tables (issue 16, item 6).

One tiny run on SQLite (a few hundred requests), as a subprocess with stderr piped and
``COLUMNS=100``, as a user pipes it into a log or a pager.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from stockguard.bench import report
from stockguard.bench.runner import JSON_FIELDS, RunResult

STRATEGIES = ("coalescing", "conditional")


@dataclass(frozen=True)
class Run:
    status: int
    stdout: str
    stderr: str
    report: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    where = tmp_path_factory.mktemp("bench-output")
    arguments = ["--db", f"sqlite:///{where / 'bench.db'}", "--workload", "flash"]
    for name in STRATEGIES:
        arguments += ["--strategy", name]
    arguments += ["--requests", "300", "--units", "100", "--concurrency", "50"]
    arguments += ["--json", "--report", str(where / "report")]
    child = subprocess.run(
        [sys.executable, "-m", "stockguard.cli", "bench", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
        timeout=300,
        check=False,
    )
    return Run(child.returncode, child.stdout, child.stderr, where / "report")


def test_the_table_fits_in_100_columns_with_every_strategy_name_whole(run: Run) -> None:
    assert run.status == 0, run.stderr
    lines = [line.rstrip() for line in run.stderr.splitlines()]
    assert max(len(line) for line in lines) <= 100, run.stderr
    assert "…" not in run.stderr
    for admission in ("off", "on"):
        assert f"flash on sqlite · admission {admission} · 300 requests per run" in lines
    for name in STRATEGIES:
        rows = [line for line in lines if re.match(rf"{re.escape(name)} +[\d,]+ ", line)]
        assert len(rows) == 2, run.stderr  # admission off and on
    # The table names fields as --json does (succeeded, not held); --json is unchanged.
    header = next(line for line in lines if line.startswith("strategy "))
    assert header.split()[:5] == ["strategy", "succeeded", "rejected", "errors", "oversold"]
    assert "held" not in header
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [tuple(row) for row in rows] == [JSON_FIELDS] * 4
    assert {row["strategy"] for row in rows} == {
        *STRATEGIES,
        *(name + "+admission" for name in STRATEGIES),
    }


def test_progress_goes_to_stderr_as_plain_lines_when_piped(run: Run) -> None:
    progress = [line for line in run.stderr.splitlines() if line.startswith("bench: ")]
    assert progress[0] == "bench: 1/4 flash coalescing on sqlite: 300 requests"
    assert any(line.startswith("bench: 4/4 flash conditional+admission") for line in progress)
    assert sum("done in" in line for line in progress) == 4
    assert "\x1b[" not in run.stderr  # no cursor movement or colours in a pipe
    assert "bench:" not in run.stdout  # stdout is the JSON only


def test_the_report_has_html_tables_with_their_plots_and_no_markdown(run: Run) -> None:
    page = (run.report / "index.html").read_text()

    assert page.count("<table") == 1  # one backend and workload
    assert "<pre>" not in page
    assert "| --- |" not in page and "| backend |" not in page and "####" not in page
    assert "stockguard bench --db sqlite:///" in page
    assert re.search(r"<dt>cores</dt><dd>\d+</dd>", page)
    assert "<dt>Python</dt>" in page and "<dt>SQLite</dt>" in page
    for name in STRATEGIES:
        assert f"<td>{name}</td>" in page and f"<td>{name}+admission</td>" in page
    assert '<th scope="col" title="held (or replayed) reservations">succeeded</th>' in page
    # The plots of "flash on sqlite" sit right after its table, in the same section.
    section = re.search(r'<section id="flash-on-sqlite">(.*?)</section>', page, re.DOTALL)
    assert section is not None
    assert section.group(1).index("</table>") < section.group(1).index(
        'src="flash-sqlite-staircase.png"'
    )
    assert "<script>" in page and "http" not in page.split("<script>")[1]  # inline, no CDN


def test_failed_runs_and_uneven_request_counts_are_shown() -> None:
    def result(strategy: str, requests: int, oversold: int = 0) -> RunResult:
        return RunResult(strategy, "sqlite", "mixed", requests, 5, 0, 0, oversold, 10, 1, 2, 3, 4)

    results = [result("conditional", 10), result("sharded", 12, oversold=1)]
    results[1].violations.append("I1 SKU-1: reserved 6 > on_hand 5")

    page = report.html_page(results, "stockguard bench", {"cores": "2"}, {})
    assert '<tr class="failed"><td>sharded</td>' in page
    assert "I1 SKU-1: reserved 6 &gt; on_hand 5" in page
    assert "1 of 2 runs oversold or broke an invariant." in page

    from rich.console import Console

    console = Console(width=100, record=True)
    console.print(report.results_table(results))
    text = console.export_text()
    assert "mixed on sqlite · admission off" in [line.rstrip() for line in text.splitlines()]
    assert re.search(r"^sharded +12 +5 ", text, re.MULTILINE)  # a requests column


def test_ratios_pair_each_row_with_conditional_of_the_same_variant() -> None:
    """``× cond.`` divides by conditional's run with the same suffixes (locations,
    events, admission): a 3-location row is not compared with a 1-location one."""
    from stockguard.bench.runner import RunResult, ratios

    def result(label: str, per_s: float) -> RunResult:
        return RunResult(label, "postgres", "flash", 10, 5, 5, 0, 0, per_s, 1, 2, 3, 4)

    rows = [
        result("conditional+locations:1", 100),
        result("coalescing+locations:1", 1_000),
        result("conditional+locations:3", 50),
        result("coalescing+locations:3", 900),
        result("coalescing+locations:3+admission", 800),
    ]
    assert [ratio for _, ratio in ratios(rows)] == [1.0, 10.0, 1.0, 18.0, None]
