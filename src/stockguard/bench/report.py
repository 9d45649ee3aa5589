"""What ``stockguard bench`` shows: rich tables, JSON lines, Markdown, and an HTML report.

The HTML report (``--report DIR``) holds, per backend and workload, three plots drawn
with matplotlib: latency by arrival order per strategy (docs/design.md#seed-002's staircase: one
transaction per buyer the N-th buyer waits N transactions), latency percentiles, and
throughput per strategy. ``results.json`` and ``results.md`` beside it hold the numbers.

Long (~470 lines) because it renders one result set three ways (terminal, Markdown,
HTML with plots) and the three must name the same fields; kept together so they do.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import platform
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from stockguard import __version__
from stockguard.bench.runner import ADMISSION_SUFFIX, RunResult, ratios

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
        *sorted(
            k for k in result.counters if k.startswith(("confirm_", "release_", "error_", "drop_"))
        ),
    ]
    return ", ".join(f"{k}={result.counters[k]}" for k in names if result.counters.get(k))


COLUMNS = (
    ("succeeded", "succeeded"),
    ("rejected", "rejected"),
    ("errors", "errors"),
    ("oversold", "oversold"),
    ("throughput_per_s", "req/s"),
    ("ratio", "× cond."),
    ("p50_ms", "p50"),
    ("p95_ms", "p95"),
    ("p99_ms", "p99"),
    ("max_ms", "max"),
)
"""The terminal table's columns after ``strategy``: --json's field names, shortened only
where :data:`LEGEND` says so, so the table fits in 100 columns."""
LEGEND = (
    "admission on: rows named STRATEGY+admission in --json (admission control in front of "
    "the strategy); req/s is --json's throughput_per_s; × cond. is req/s over conditional's "
    "with the same backend, workload and admission; p50, p95, p99 and max are latencies in "
    "ms (p50_ms to max_ms)."
)


def _ms(value: float) -> str:
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _cells(result: RunResult, ratio: float | None) -> list[str]:
    values: dict[str, str] = {
        "succeeded": f"{result.succeeded:,}",
        "rejected": f"{result.rejected:,}",
        "errors": f"{result.errors:,}",
        "oversold": f"{result.oversold:,}",
        "throughput_per_s": f"{result.throughput_per_s:,.0f}",
        "ratio": "" if ratio is None else f"{ratio}×",
    }
    for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        values[name] = _ms(getattr(result, name))
    return [values[name] for name, _ in COLUMNS]


def _groups(
    results: Sequence[RunResult],
) -> dict[tuple[str, str], list[tuple[RunResult, float | None]]]:
    """Results with their ratio, by (backend, workload) in the order they ran."""
    groups: dict[tuple[str, str], list[tuple[RunResult, float | None]]] = {}
    for result, ratio in ratios(results):
        groups.setdefault((result.backend, result.workload), []).append((result, ratio))
    return groups


def results_table(results: Sequence[RunResult]) -> Group:
    """One table per backend, workload and admission, each under 100 columns.

    The strategy column holds whole names (``+admission`` is in the table's title, not in
    every row), the number of requests is in the title when every row had the same, and
    the counters are listed under the table, one line per strategy.
    """
    parts: list[RenderableType] = []
    for (backend, workload), paired in _groups(results).items():
        for admission in (False, True):
            rows = [(r, q) for r, q in paired if r.strategy.endswith(ADMISSION_SUFFIX) == admission]
            if not rows:
                continue
            counts = {r.requests for r, _ in rows}
            uniform = len(counts) == 1
            title = f"{workload} on {backend} · admission {'on' if admission else 'off'}"
            title += f" · {next(iter(counts)):,} requests per run" if uniform else ""
            table = Table(
                title=title,
                title_justify="left",
                title_style="bold",
                box=box.SIMPLE_HEAD,
                show_edge=False,
                pad_edge=False,
                collapse_padding=True,
            )
            table.add_column("strategy", no_wrap=True)
            if not uniform:
                table.add_column("requests", justify="right", no_wrap=True)
            for _, header in COLUMNS:
                table.add_column(header, justify="right", no_wrap=True)
            notes: list[str] = []
            for result, ratio in rows:
                name = result.strategy.removesuffix(ADMISSION_SUFFIX)
                table.add_row(
                    name,
                    *([] if uniform else [f"{result.requests:,}"]),
                    *_cells(result, ratio),
                    style=None if result.ok else "bold red",
                )
                if counters := _counters(result):
                    notes.append(f"  {name}: {counters}")
            parts.append(table)
            if notes:
                parts.append(Text("counters:\n" + "\n".join(notes)))
            parts.append(Text(""))
    parts.append(Text(LEGEND, style="dim"))
    return Group(*parts)


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


def machine() -> dict[str, str]:
    """What this machine is, as far as it is cheap to tell: the report's header."""
    facts = {
        "cores": str(os.cpu_count() or "?"),
        "memory": _memory(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "system": platform.platform(terse=True),
        "SQLite": sqlite3.sqlite_version,
        "stockguard": __version__,
    }
    return facts


def _memory() -> str:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return "?"
    return f"{pages * page_size / 2**30:.1f} GiB"


def write_report(
    directory: Path,
    results: Sequence[RunResult],
    command: str,
    facts: Mapping[str, str] | None = None,
) -> Path:
    """index.html, results.json, results.md and the PNG plots; returns the HTML path."""
    plt = pyplot()  # the report extra: checked before the runs (plotting_missing)
    facts = machine() if facts is None else facts
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json_lines(results) + "\n")
    about = "; ".join(f"{k} {v}" for k, v in facts.items())
    (directory / "results.md").write_text(
        f"Command: `{command}`\n\nMachine: {about}\n\n{markdown(results)}"
    )
    images: dict[tuple[str, str], list[str]] = {}
    for backend, workload in dict.fromkeys((r.backend, r.workload) for r in results):
        group = [r for r in results if r.backend == backend and r.workload == workload]
        stem = plot_stem(backend, workload)
        named = images.setdefault((backend, workload), [])

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
        named.append(_save(figure, directory / f"{stem}-staircase.png"))

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
        named.append(_save(figure, directory / f"{stem}-percentiles.png"))

        figure, axes = plt.subplots(figsize=(9, 4.5))
        axes.bar([r.strategy for r in group], [r.throughput_per_s for r in group])
        axes.set(ylabel="requests answered per second", title="throughput per strategy")
        axes.tick_params(axis="x", labelrotation=20)
        named.append(_save(figure, directory / f"{stem}-throughput.png"))
    page = directory / "index.html"
    page.write_text(html_page(results, command, facts, images))
    return page


def plot_stem(backend: str, workload: str) -> str:
    """The plots of one backend and workload are ``<stem>-staircase.png`` and so on."""
    return _slug(f"{workload}-{backend}")


HTML_COLUMNS = (
    ("strategy", "strategy", "the strategy, +admission behind admission control"),
    ("requests", "requests", "reservation requests timed"),
    ("succeeded", "succeeded", "held (or replayed) reservations"),
    ("rejected", "rejected", "typed refusals: out of stock, overloaded, idempotency conflict"),
    ("errors", "errors", "any other answer"),
    ("oversold", "oversold", "units oversold, from the audit: must be 0"),
    ("throughput_per_s", "req/s", "throughput_per_s: requests answered per second"),
    ("ratio", "× conditional", "req/s over conditional's, same backend, workload, admission"),
    ("p50_ms", "p50 ms", "p50_ms"),
    ("p95_ms", "p95 ms", "p95_ms"),
    ("p99_ms", "p99 ms", "p99_ms"),
    ("max_ms", "max ms", "max_ms"),
    ("counters", "counters", "what admission control and the strategy counted"),
)
"""The HTML tables' columns: (--json field, header, tooltip)."""

_STYLE = """\
body{font:15px/1.45 system-ui,sans-serif;max-width:1440px;margin:1.5em auto;padding:0 1em;\
color:#1d2230}
h1{margin-bottom:.2em}h2{margin-top:2em;border-bottom:2px solid #dde2ea;padding-bottom:.2em}
code{background:#f2f4f7;padding:.1em .3em;border-radius:3px;word-break:break-all}
dl.machine{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1em;margin:.8em 0}
dl.machine dt{font-weight:600}dl.machine dd{margin:0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.6em 0;width:100%}
th,td{padding:.2em .5em;border-bottom:1px solid #e4e7ec;text-align:right;white-space:nowrap}
th:first-child,td:first-child,th:last-child,td:last-child{text-align:left}
td:last-child{white-space:normal;overflow-wrap:anywhere;min-width:19em;font-size:.8em;\
color:#4a5263}
.scroll{overflow-x:auto}
th{background:#f2f4f7;cursor:pointer;user-select:none}th[aria-sort]::after{content:" ▲"}
th[aria-sort=descending]::after{content:" ▼"}
tr.failed td{background:#fde8e8;color:#9b1c1c;font-weight:600}
tbody tr:hover td{background:#f7f9fc}
.plots{display:grid;grid-template-columns:1fr 1fr;gap:.8em}
.plots img{width:100%;border:1px solid #e4e7ec}.plots img:first-child{grid-column:1/3}
.violations{color:#9b1c1c}
"""

_SORT_JS = """\
document.querySelectorAll("table.sortable th").forEach((th, column) => {
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0];
    const down = th.getAttribute("aria-sort") === "ascending";
    th.closest("tr").querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", down ? "descending" : "ascending");
    const key = tr => tr.cells[column].dataset.value ?? tr.cells[column].textContent;
    const rows = [...body.rows].sort((a, b) => {
      const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      const order = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
      return down ? -order : order;
    });
    body.append(...rows);
  });
});
"""


def _html_row(result: RunResult, ratio: float | None) -> str:
    cells: list[str] = []
    for name, _, _ in HTML_COLUMNS:
        if name == "strategy":
            text, value = result.strategy, None
        elif name == "counters":
            text, value = _counters(result), None
        elif name == "ratio":
            text, value = ("" if ratio is None else f"{ratio}×"), ratio
        else:
            number = getattr(result, name)
            text = (
                f"{number:,.0f}"
                if name == "throughput_per_s"
                else _ms(number)
                if name.endswith("_ms")
                else f"{number:,}"
            )
            value = number
        data = "" if value is None else f' data-value="{value}"'
        cells.append(f"<td{data}>{html.escape(text)}</td>")
    failed = "" if result.ok else ' class="failed"'
    return f"<tr{failed}>" + "".join(cells) + "</tr>"


def html_page(
    results: Sequence[RunResult],
    command: str,
    facts: Mapping[str, str],
    images: Mapping[tuple[str, str], Sequence[str]],
) -> str:
    """The report: the command and machine on top, then per backend and workload a
    sortable table of its runs with that group's plots right under it."""
    head = "".join(
        f'<th scope="col" title="{html.escape(tip)}">{html.escape(label)}</th>'
        for _, label, tip in HTML_COLUMNS
    )
    about = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts.items())
    failed = sum(not r.ok for r in results)
    verdict = (
        f"{len(results)} runs, audited after each: nothing oversold, no invariant broken."
        if not failed
        else f"{failed} of {len(results)} runs oversold or broke an invariant."
    )
    sections: list[str] = []
    for (backend, workload), paired in _groups(results).items():
        rows = "\n".join(_html_row(r, q) for r, q in paired)
        problems = [
            f"<li>{html.escape(r.strategy)}: {html.escape(v)}</li>"
            for r, _ in paired
            for v in r.violations
        ]
        plots = "".join(
            f'<img src="{html.escape(name)}" alt="{html.escape(name)}" loading="lazy">'
            for name in images.get((backend, workload), ())
        )
        title = f"{workload} on {backend}"
        sections.append(
            f'<section id="{_slug(title)}">\n<h2>{html.escape(title)}</h2>\n'
            f'<div class="scroll"><table class="sortable">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{rows}\n</tbody>\n</table></div>\n"
            + (f'<ul class="violations">{"".join(problems)}</ul>\n' if problems else "")
            + (f'<div class="plots">{plots}</div>\n' if plots else "")
            + "</section>"
        )
    return (
        "<!doctype html>\n<html lang=en>\n<meta charset=utf-8>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>stockguard bench</title>\n<style>\n{_STYLE}</style>\n"
        "<h1>stockguard bench</h1>\n"
        f"<p><code>{html.escape(command)}</code></p>\n"
        f'<dl class="machine">{about}</dl>\n'
        f"<p>{html.escape(verdict)} In-process: the engine is called directly (no HTTP). "
        "Click a column heading to sort.</p>\n"
        + "\n".join(sections)
        + f"\n<script>\n{_SORT_JS}</script>\n</html>\n"
    )


def _save(figure: object, path: Path) -> str:
    plt = pyplot()
    figure.tight_layout()  # type: ignore[attr-defined]
    figure.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(figure)
    return path.name
