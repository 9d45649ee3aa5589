"""What ``stockguard bench`` shows: rich tables, JSON lines, Markdown, and an HTML report.

The HTML report (``--report DIR``) holds, per backend and workload, three plots drawn
with matplotlib: latency by arrival order per strategy (docs/design.md#seed-002's staircase: one
transaction per buyer the N-th buyer waits N transactions), latency percentiles, and
throughput per strategy. ``results.json`` and ``results.md`` beside it hold the numbers.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from stockguard.bench.runner import ADMISSION_SUFFIX, JSON_FIELDS, RunResult, ratios

MARK_BEGIN = "<!-- bench:begin -->"
MARK_END = "<!-- bench:end -->"
COUNTER_NAMES = (
    "passed",
    "fastpath",
    "lookups",
    "overloaded",
    "coalescing_batches",
    "conflict_retries",
)
"""Shown in tables, with every counter of a failed confirm or release (``*_store-…``) and
of each kind of error answer (``error_<kind>``)."""


def _counters(result: RunResult) -> str:
    names = [
        *COUNTER_NAMES,
        *sorted(k for k in result.counters if k.startswith(("confirm_", "release_", "error_"))),
    ]
    return ", ".join(f"{k}={result.counters[k]}" for k in names if result.counters.get(k))


_HEADERS = {
    "strategy": "strategy",
    "backend": "backend",
    "workload": "workload",
    "requests": "requests",
    "succeeded": "held",
    "rejected": "rejected",
    "errors": "errors",
    "oversold": "oversold",
    "throughput_per_s": "req/s",
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "p99_ms": "p99 ms",
    "max_ms": "max ms",
}


def results_table(results: Sequence[RunResult]) -> Table:
    table = Table(title="stockguard bench", title_justify="left")
    for name in JSON_FIELDS:
        table.add_column(_HEADERS[name], justify="left" if name in JSON_FIELDS[:3] else "right")
    table.add_column("× cond.", justify="right")
    table.add_column("counters")
    for result, ratio in ratios(results):
        table.add_row(
            *(str(result.as_json()[name]) for name in JSON_FIELDS),
            "" if ratio is None else f"{ratio}×",
            _counters(result),
            style=None if result.ok else "bold red",
        )
    return table


def json_lines(results: Sequence[RunResult]) -> str:
    return "\n".join(json.dumps(r.as_json()) for r in results)


def markdown(results: Sequence[RunResult]) -> str:
    """One Markdown table per workload, with the ratio to conditional on the same backend."""
    lines: list[str] = []
    paired = ratios(results)
    for workload in dict.fromkeys(r.workload for r in results):
        lines += [
            f"#### {workload}",
            "",
            "| backend | strategy | requests | succeeded | rejected | errors | oversold "
            "| throughput/s | × conditional | p50 ms | p95 ms | p99 ms | max ms | counters |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | --- |",
        ]
        for r, ratio in paired:
            if r.workload != workload:
                continue
            lines.append(
                f"| {r.backend} | {r.strategy} | {r.requests} | {r.succeeded} | {r.rejected} "
                f"| {r.errors} | {r.oversold} | {r.throughput_per_s:,.0f} "
                f"| {'' if ratio is None else f'{ratio}×'} | {r.p50_ms} | {r.p95_ms} "
                f"| {r.p99_ms} | {r.max_ms} | {_counters(r)} |"
            )
        lines.append("")
    problems = [
        f"- {r.backend} {r.strategy} {r.workload}: {v}" for r in results for v in r.violations
    ]
    if problems:
        lines += ["**Invariant violations:**", "", *problems, ""]
    return "\n".join(lines)


def update_markdown(path: Path, results: Sequence[RunResult], command: str) -> None:
    """Replaces the region between the bench markers of ``path`` (or writes a new file)."""
    body = f"{MARK_BEGIN}\n\nCommand: `{command}`\n\n{markdown(results)}\n{MARK_END}"
    if path.exists() and MARK_BEGIN in path.read_text() and MARK_END in path.read_text():
        text = re.sub(
            re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END),
            lambda _: body,
            path.read_text(),
            flags=re.DOTALL,
        )
    else:
        text = body + "\n"
    path.write_text(text)


REPORT_EXTRA = "pip install 'stockguard[report]'"
EXIT_MISSING_PACKAGE = 4
"""As ``serve``'s start-up failure for a missing package (service/startup.py)."""


def plotting_missing(what: str) -> str | None:
    """Why ``what`` cannot draw its plots here (matplotlib is the ``report`` extra, not a
    dependency of the service), and the fix; None when it can."""
    if importlib.util.find_spec("matplotlib") is not None:
        return None
    return (
        f"stockguard: {what} draws its plots with matplotlib, which is not installed\n"
        f"  fix: {REPORT_EXTRA}"
    )


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (imported only when plotting)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def write_report(directory: Path, results: Sequence[RunResult], command: str) -> Path:
    """index.html, results.json, results.md and the PNG plots; returns the HTML path."""
    plt = pyplot()  # the report extra: checked before the runs (plotting_missing)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json_lines(results) + "\n")
    (directory / "results.md").write_text(f"Command: `{command}`\n\n{markdown(results)}")
    sections: list[str] = []
    groups = dict.fromkeys((r.backend, r.workload) for r in results)
    for backend, workload in groups:
        group = [r for r in results if r.backend == backend and r.workload == workload]
        stem = _slug(f"{workload}-{backend}")
        images = []

        panels = [
            [r for r in group if not r.strategy.endswith(ADMISSION_SUFFIX)],
            [r for r in group if r.strategy.endswith(ADMISSION_SUFFIX)],
        ]
        panels = [panel for panel in panels if panel]
        figure, axes_row = plt.subplots(
            1, len(panels), figsize=(6 * len(panels), 4.5), sharey=True, squeeze=False
        )
        for axes, panel in zip(axes_row[0], panels, strict=True):
            for r in panel:
                axes.plot(
                    range(1, len(r.latency_ms) + 1), r.latency_ms, ".", ms=1.5, label=r.strategy
                )
            axes.set(xlabel="request number (arrival order)", yscale="log")
            axes.legend(markerscale=6, fontsize="small")
        axes_row[0][0].set_ylabel("latency (ms, log)")
        figure.suptitle(f"{workload} on {backend}: latency by arrival order")
        images.append(_save(figure, directory / f"{stem}-staircase.png"))

        figure, axes = plt.subplots(figsize=(9, 4.5))
        width = 0.8 / 4
        for n, (name, label) in enumerate(
            (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99"), ("max_ms", "max"))
        ):
            axes.bar(
                [i + n * width for i in range(len(group))],
                [getattr(r, name) for r in group],
                width,
                label=label,
            )
        axes.set_xticks([i + 1.5 * width for i in range(len(group))])
        axes.set_xticklabels([r.strategy for r in group], rotation=20, ha="right")
        axes.set(ylabel="latency (ms, log)", yscale="log", title="latency percentiles")
        axes.legend(fontsize="small")
        images.append(_save(figure, directory / f"{stem}-percentiles.png"))

        figure, axes = plt.subplots(figsize=(9, 4.5))
        axes.bar([r.strategy for r in group], [r.throughput_per_s for r in group])
        axes.set(ylabel="requests answered per second", title="throughput per strategy")
        axes.tick_params(axis="x", labelrotation=20)
        images.append(_save(figure, directory / f"{stem}-throughput.png"))

        sections.append(
            f"<h2>{html.escape(workload)} on {html.escape(backend)}</h2>\n"
            + "\n".join(f'<img src="{name}" alt="{html.escape(name)}">' for name in images)
        )
    page = directory / "index.html"
    page.write_text(
        "<!doctype html>\n<meta charset=utf-8>\n<title>stockguard bench</title>\n"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}"
        "img{max-width:100%}pre{white-space:pre-wrap}</style>\n"
        f"<h1>stockguard bench</h1>\n<pre>{html.escape(command)}</pre>\n"
        f"<pre>{html.escape(markdown(results))}</pre>\n" + "\n".join(sections) + "\n"
    )
    return page


def _save(figure: object, path: Path) -> str:
    plt = pyplot()
    figure.tight_layout()  # type: ignore[attr-defined]
    figure.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(figure)
    return path.name
