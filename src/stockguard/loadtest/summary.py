"""The end-of-test summary (k6's shape), its JSON, and the service's ``/metrics`` deltas."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from stockguard.loadtest.audit import Check
from stockguard.loadtest.plan import KINDS, Plan, Stats, Threshold
from stockguard.loadtest.run import Recorded

PERCENTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p99.9": 99.9}
METRIC_FAMILIES = (
    "stockguard_http_requests",
    "stockguard_reservations",
    "stockguard_reservation_transitions",
    "stockguard_reservations_expired",
    "stockguard_admission",
    "stockguard_soldout_fastpath",
    "stockguard_expiry_sweeps",
    "stockguard_strategy_events",
)
"""Counters whose change over the run the report shows (docs/design.md#operations)."""


def latency_ms(latency_s: np.ndarray[Any, Any], extra: tuple[str, ...] = ()) -> dict[str, float]:
    if not len(latency_s):
        return {}
    ms = latency_s * 1000.0
    found = {
        "min": float(ms.min()),
        "avg": float(ms.mean()),
        "med": float(np.percentile(ms, 50)),
        "max": float(ms.max()),
    }
    wanted = {**PERCENTILES, **{name: float(name[1:]) for name in extra}}
    for name, p in wanted.items():
        found[name] = float(np.percentile(ms, p))
    return found


@dataclass
class Measured:
    """The figures of one run (the service's, or the echo's for ``--calibrate``)."""

    requests: int
    duration_s: float
    rate_per_s: float
    statuses: dict[int, int]
    latency_ms: dict[str, float]
    by_kind: dict[str, dict[str, Any]]
    vus_max: int
    dropped: int
    client_cpu_cores: float
    processes: int
    engine: str
    errors: list[str] = field(default_factory=list)

    def stats(self, allowed: frozenset[int]) -> Stats:
        failed = sum(n for s, n in self.statuses.items() if s not in allowed)
        return Stats(
            requests=self.requests,
            rate_per_s=self.rate_per_s,
            statuses=self.statuses,
            latency_ms=self.latency_ms,
            failed_share=failed / self.requests if self.requests else 0.0,
        )


def measure(recorded: Recorded, thresholds: list[Threshold]) -> Measured:
    extra = tuple(
        t.metric for t in thresholds if t.metric.startswith("p") and t.metric not in PERCENTILES
    )
    ends = recorded.start_s + recorded.latency_s
    duration = float(ends.max()) if len(ends) else recorded.wall_s
    duration = max(duration, 1e-9)
    statuses = Counter(int(s) for s in recorded.status.tolist())
    by_kind: dict[str, dict[str, Any]] = {}
    for code, name in enumerate(KINDS):
        mask = recorded.kind == code
        count = int(mask.sum())
        if not count:
            continue
        kind_statuses = Counter(int(s) for s in recorded.status[mask].tolist())
        by_kind[name] = {
            "requests": count,
            "statuses": dict(sorted(kind_statuses.items())),
            "latency_ms": latency_ms(recorded.latency_s[mask]),
        }
    return Measured(
        requests=len(recorded.status),
        duration_s=duration,
        rate_per_s=len(recorded.status) / duration,
        statuses=dict(sorted(statuses.items())),
        latency_ms=latency_ms(recorded.latency_s, extra),
        by_kind=by_kind,
        vus_max=max((v for _, v in recorded.vus), default=0),
        dropped=recorded.dropped,
        client_cpu_cores=recorded.cpu_s / max(recorded.wall_s, 1e-9),
        processes=recorded.processes,
        engine=recorded.engine,
        errors=recorded.errors,
    )


def metric_deltas(before: str | None, after: str | None) -> dict[str, float]:
    """Counter samples of ``METRIC_FAMILIES`` that changed, as ``name{labels}`` → delta."""
    if before is None or after is None:
        return {}
    old, new = _samples(before), _samples(after)
    return {
        key: value - old.get(key, 0.0)
        for key, value in sorted(new.items())
        if value - old.get(key, 0.0) != 0
    }


def _samples(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in METRIC_FAMILIES or family.type != "counter":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            found[key] = found.get(key, 0.0) + sample.value
    return found


@dataclass
class Outcome:
    """Everything a run produced: what the command prints, writes as JSON and reports."""

    scenario: str
    target: str
    served: str | None
    plan: Plan
    measured: Measured
    checks: list[Check]
    thresholds: list[tuple[Threshold, bool, str]]
    calibrate: Measured | None
    metrics: dict[str, float]
    notes: list[str]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks) and all(ok for _, ok, _ in self.thresholds)

    def to_json(self) -> dict[str, Any]:
        def figures(m: Measured) -> dict[str, Any]:
            return {
                "requests": m.requests,
                "duration_s": round(m.duration_s, 3),
                "rate_per_s": round(m.rate_per_s, 1),
                "statuses": {str(k): v for k, v in m.statuses.items()},
                "latency_ms": {k: round(v, 3) for k, v in m.latency_ms.items()},
                "by_kind": m.by_kind,
                "vus_max": m.vus_max,
                "dropped_iterations": m.dropped,
                "client": {
                    "processes": m.processes,
                    "engine": m.engine,
                    "cpu_cores_busy": round(m.client_cpu_cores, 2),
                },
                "errors": m.errors,
            }

        return {
            "scenario": self.scenario,
            "target": self.target,
            "served": self.served,
            "plan": self.plan.describe(),
            **figures(self.measured),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "thresholds": [
                {"threshold": t.text, "ok": ok, "measured": shown}
                for t, ok, shown in self.thresholds
            ],
            "calibrate": figures(self.calibrate) if self.calibrate else None,
            "metrics_delta": self.metrics,
            "notes": self.notes,
            "passed": self.passed,
        }


def _dots(label: str) -> str:
    return f"  {label} ".ljust(34, ".") + ": "


def latency_line(latency: dict[str, float]) -> str:
    if not latency:
        return "-"
    parts = [
        ("avg", "avg"),
        ("min", "min"),
        ("med", "med"),
        ("p(90)", "p90"),
        ("p(95)", "p95"),
        ("p(99)", "p99"),
        ("max", "max"),
    ]
    return " ".join(f"{label}={_ms(latency[key])}" for label, key in parts)


def _ms(value: float) -> str:
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.2f}ms"


def text(outcome: Outcome) -> str:
    m = outcome.measured
    lines = [
        "",
        f"  scenario: {outcome.scenario} · {outcome.plan.describe()}",
        f"  target:   {outcome.target}" + (f" ({outcome.served})" if outcome.served else ""),
        "",
    ]
    for check in outcome.checks:
        lines.append(f"  {'✓' if check.ok else '✗'} {check.name}: {check.detail}")
    for threshold, ok, shown in outcome.thresholds:
        lines.append(f"  {'✓' if ok else '✗'} threshold {threshold.text}: {shown}")
    passed = sum(c.ok for c in outcome.checks)
    failed = len(outcome.checks) - passed
    lines += [
        "",
        _dots("checks") + f"{passed / max(1, len(outcome.checks)):.2%} ✓ {passed} ✗ {failed}",
        _dots("http_reqs") + f"{m.requests:,} {m.rate_per_s:,.1f}/s",
        _dots("http_req_duration") + latency_line(m.latency_ms),
        _dots("statuses") + " ".join(f"{s}×{n:,}" for s, n in m.statuses.items()),
    ]
    for kind, figures in m.by_kind.items():
        if len(m.by_kind) > 1:
            statuses = " ".join(f"{s}×{n:,}" for s, n in figures["statuses"].items())
            lines.append(
                _dots(f"{{kind:{kind}}}")
                + f"{figures['requests']:,} {statuses} p95={_ms(figures['latency_ms']['p95'])}"
            )
    lines.append(_dots("duration") + f"{m.duration_s:.1f}s of load")
    lines.append(_dots("vus_max") + f"{m.vus_max:,}")
    if m.dropped:
        lines.append(_dots("dropped_iterations") + f"{m.dropped:,}")
    lines.append(
        _dots("client") + f"{m.processes} process(es), {m.engine} keep-alive, "
        f"{m.client_cpu_cores:.2f} CPU cores busy"
    )
    if outcome.calibrate is not None:
        c = outcome.calibrate
        share = m.rate_per_s / c.rate_per_s if c.rate_per_s else 0.0
        lines.append(
            _dots("client ceiling (echo)")
            + f"{c.rate_per_s:,.1f}/s p95={_ms(c.latency_ms.get('p95', 0.0))}; the service "
            f"ran at {share:.0%} of it"
        )
    for note in outcome.notes:
        lines.append(f"  note: {note}")
    if outcome.metrics:
        lines.append("")
        lines.append("  service /metrics over the run:")
        for key, value in outcome.metrics.items():
            lines.append(f"    {key} +{value:,.0f}")
    lines.append("")
    lines.append("  PASSED" if outcome.passed else "  FAILED")
    return "\n".join(lines) + "\n"


def client_notes(measured: Measured, calibrate: Measured | None, cores: int) -> list[str]:
    """Whether the client could have been the limit, said plainly."""
    notes: list[str] = []
    busy = measured.client_cpu_cores / max(1, measured.processes)
    if busy > 0.85:
        notes.append(
            f"the load processes were {busy:.0%} busy: the rate may be the client's limit "
            "(run with --calibrate to see its ceiling)"
        )
    if calibrate is not None and calibrate.rate_per_s:
        share = measured.rate_per_s / calibrate.rate_per_s
        if share >= 0.8:
            notes.append(
                f"the service reached {share:.0%} of the client's ceiling on a bare echo: "
                "the client or this machine may be the limit"
            )
        else:
            notes.append(
                f"the client can drive {calibrate.rate_per_s:,.0f}/s on this machine; the "
                f"service's {measured.rate_per_s:,.0f}/s is its own"
            )
    if measured.dropped:
        notes.append(
            f"{measured.dropped:,} arrivals found no free VU and were dropped (raise --vus)"
        )
    if cores <= 2:
        notes.append(
            f"{cores} core(s) on this machine: the client shares them with the service when "
            "both run here"
        )
    return notes
