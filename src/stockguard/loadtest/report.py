"""``--report DIR``: one HTML page with PNG plots (matplotlib), the summary and its JSON.

Plots: latency by arrival order (``docs/design.md#seed-002``'s staircase), requests/s and
statuses over time, latency percentiles over time, VUs over time, and the latency
distribution next to the client's ceiling (``--calibrate``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from stockguard.bench.report import pyplot  # matplotlib: the report extra
from stockguard.loadtest.run import Recorded
from stockguard.loadtest.summary import Outcome, text

POINTS_MAX = 200_000
STATUS_COLOURS = {
    0: "black",
    200: "tab:blue",
    201: "tab:green",
    409: "tab:orange",
    410: "tab:purple",
    429: "tab:red",
    503: "tab:brown",
}


def _colour(status: int) -> str:
    return STATUS_COLOURS.get(status, "tab:gray")


def _bin_s(duration_s: float) -> float:
    return max(0.1, round(duration_s / 120, 1))


def staircase(recorded: Recorded, path: Path) -> None:
    order = np.argsort(recorded.start_s, kind="stable")
    latency = recorded.latency_s[order] * 1000
    status = recorded.status[order]
    rank = np.arange(1, len(order) + 1)
    step = max(1, len(order) // POINTS_MAX)
    fig, ax = pyplot().subplots(figsize=(10, 4.5))
    for value in np.unique(status).tolist():
        mask = status[::step] == value
        ax.scatter(
            rank[::step][mask],
            latency[::step][mask],
            s=2,
            c=_colour(value),
            label=str(value) if value else "no answer",
            rasterized=True,
        )
    ax.set_xlabel("request, in order of sending" + (f" (every {step}th)" if step > 1 else ""))
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency by arrival order")
    ax.legend(markerscale=4, title="status")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def timeline(recorded: Recorded, path: Path) -> None:
    ends = recorded.start_s + recorded.latency_s
    duration = float(ends.max()) if len(ends) else 1.0
    width = _bin_s(duration)
    edges = np.arange(0.0, duration + width, width)
    fig, (rate_ax, lat_ax) = pyplot().subplots(2, 1, figsize=(10, 6.5), sharex=True)
    total, _ = np.histogram(ends, bins=edges)
    rate_ax.plot(edges[:-1], total / width, color="black", label="all", linewidth=1.2)
    for value in np.unique(recorded.status).tolist():
        counts, _ = np.histogram(ends[recorded.status == value], bins=edges)
        rate_ax.plot(
            edges[:-1],
            counts / width,
            color=_colour(value),
            linewidth=1,
            label=str(value) if value else "no answer",
        )
    rate_ax.set_ylabel("answers/s")
    rate_ax.set_title(f"Requests per second by status ({width:g} s bins, by answer time)")
    rate_ax.legend(loc="upper right")
    rate_ax.grid(alpha=0.3)
    which = np.digitize(ends, edges) - 1
    for p, style in ((50, ":"), (95, "-"), (99, "--")):
        values = [
            float(np.percentile(recorded.latency_s[which == i], p)) * 1000
            if np.any(which == i)
            else np.nan
            for i in range(len(edges) - 1)
        ]
        lat_ax.plot(edges[:-1], values, style, label=f"p{p}", color="tab:blue")
    lat_ax.set_ylabel("latency (ms)")
    lat_ax.set_xlabel("seconds since start")
    lat_ax.set_title("Latency percentiles over time")
    lat_ax.legend(loc="upper right")
    lat_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def vus(recorded: Recorded, path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(10, 3))
    if recorded.vus:
        times, counts = zip(*recorded.vus, strict=True)
        ax.step(times, counts, where="post", color="tab:green")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("active VUs")
    ax.set_title("Virtual users over time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def percentiles(recorded: Recorded, calibrate: Recorded | None, path: Path) -> None:
    points = np.array([0, 50, 75, 90, 95, 99, 99.9, 99.99])
    nines = -np.log10(1 - np.minimum(points, 99.99) / 100)
    fig, ax = pyplot().subplots(figsize=(10, 4))
    for label, found, colour in (
        ("service", recorded, "tab:blue"),
        ("bare echo (client ceiling)", calibrate, "tab:gray"),
    ):
        if found is None or not len(found.latency_s):
            continue
        ax.plot(
            nines, np.percentile(found.latency_s * 1000, points), "o-", label=label, color=colour
        )
    ax.set_xticks(nines, [f"p{p:g}" for p in points])
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title("Latency percentiles")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def write(
    directory: Path, outcome: Outcome, recorded: Recorded, calibrate: Recorded | None
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    staircase(recorded, directory / "staircase.png")
    timeline(recorded, directory / "timeline.png")
    vus(recorded, directory / "vus.png")
    percentiles(recorded, calibrate, directory / "percentiles.png")
    summary = outcome.to_json()
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    page = directory / "index.html"
    page.write_text(_html(outcome, summary))
    return page


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(outcome: Outcome, summary: dict[str, Any]) -> str:
    m, c = outcome.measured, outcome.calibrate

    def row(label: str, found: Any) -> list[Any]:
        lat = found.latency_ms
        return [
            label,
            f"{found.requests:,}",
            f"{found.rate_per_s:,.1f}",
            " ".join(f"{s}×{n:,}" for s, n in found.statuses.items()),
            *(f"{lat.get(k, 0):,.1f}" for k in ("p50", "p90", "p95", "p99", "max")),
            f"{found.client_cpu_cores:.2f} of {found.processes} process(es)",
        ]

    columns = ["run", "requests", "req/s", "statuses", "p50 ms", "p90 ms", "p95 ms", "p99 ms"]
    columns += ["max ms", "client CPU cores busy"]
    figures = [row("service", m)] + ([row("bare echo (client ceiling)", c)] if c else [])
    checks = [["✓" if k.ok else "✗", k.name, k.detail] for k in outcome.checks]
    checks += [
        ["✓" if ok else "✗", f"threshold {t.text}", shown] for t, ok, shown in outcome.thresholds
    ]
    metrics = [[k, f"{v:+,.0f}"] for k, v in outcome.metrics.items()]
    verdict = "PASSED" if outcome.passed else "FAILED"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>stockguard loadtest: {html.escape(outcome.scenario)} {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 72rem; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
.PASSED {{ color: #176d2b; }} .FAILED {{ color: #a11; }}
img {{ max-width: 100%; border: 1px solid #eee; margin: .5rem 0; }}
pre {{ background: #f6f6f6; padding: 1rem; overflow-x: auto; }}
</style></head><body>
<h1>stockguard loadtest: {html.escape(outcome.scenario)}
<span class="{verdict}">{verdict}</span></h1>
<p>{html.escape(outcome.plan.describe())} against {html.escape(outcome.target)}
{html.escape(f"({outcome.served})" if outcome.served else "")}</p>
<h2>Figures</h2>
{_table(columns, figures)}
<p>{"<br>".join(html.escape(n) for n in outcome.notes)}</p>
<h2>Checks and thresholds</h2>
{_table(["", "check", "detail"], checks)}
<h2>Latency by arrival order</h2><img src="staircase.png" alt="latency by arrival order">
<h2>Requests per second, statuses and latency over time</h2>
<img src="timeline.png" alt="requests per second and latency over time">
<h2>Virtual users over time</h2><img src="vus.png" alt="VUs over time">
<h2>Latency percentiles</h2><img src="percentiles.png" alt="latency percentiles">
<h2>Service <code>/metrics</code> over the run</h2>
{_table(["counter", "change"], metrics) if metrics else "<p>not available</p>"}
<h2>Summary</h2><pre>{html.escape(text(outcome))}</pre>
<p>Machine-readable: <a href="summary.json">summary.json</a>
({len(summary["checks"])} checks).</p>
</body></html>
"""
