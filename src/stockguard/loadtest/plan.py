"""What a load test does: scenario, virtual users, stages, thresholds (k6's vocabulary).

Everything here is a plain value that pickles, so the plan travels to every load process
unchanged; parsing errors are ``ValueError`` with a sentence the command prints.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

SCENARIOS = ("drop", "peak", "flash", "shop")

RESERVE, CONFIRM, RELEASE, READ = 0, 1, 2, 3
KINDS = ("reserve", "confirm", "release", "read")
"""Request kinds, as recorded per request (an index into this tuple)."""

NO_ANSWER = 0
"""The status recorded for a request that got no HTTP answer (refused, cut, timed out)."""


def parse_duration(text: str) -> float:
    """``"30s"``, ``"1m"``, ``"1m30s"``, ``"500ms"``, ``"2"`` (seconds) → seconds."""
    cleaned = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        return float(cleaned)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"not a duration: {text!r} (examples: 30s, 1m30s, 500ms)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass(frozen=True)
class Stage:
    """k6's ramping stage: go linearly from the previous target to ``target`` VUs."""

    duration_s: float
    target: int


def parse_stage(text: str) -> Stage:
    """``"30s:700"`` → 30 s ramping to 700 virtual users."""
    duration, sep, target = text.partition(":")
    if not sep or not target.strip().isdigit():
        raise ValueError(f"not a stage: {text!r} (DURATION:VUS, e.g. 30s:700)")
    return Stage(parse_duration(duration), int(target))


def vus_at(stages: Sequence[Stage], elapsed_s: float) -> float:
    """The ramp's VU target at ``elapsed_s`` (starting from 0 VUs, like k6's startVUs 0)."""
    start = 0.0
    previous = 0
    for stage in stages:
        if elapsed_s < start + stage.duration_s:
            done = (elapsed_s - start) / stage.duration_s if stage.duration_s else 1.0
            return previous + (stage.target - previous) * done
        start += stage.duration_s
        previous = stage.target
    return float(previous)


def share(total: int, index: int, parts: int) -> int:
    """The part of ``total`` process ``index`` of ``parts`` takes (they add up to total)."""
    return total // parts + (1 if index < total % parts else 0)


# ---------------------------------------------------------------------------- thresholds

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_METRIC = re.compile(
    r"^\s*(?:http_req_duration\s*:\s*)?"
    r"(?P<metric>avg|min|med|max|p\(?(?P<p>\d+(?:\.\d+)?)\)?|rate|requests|failed)"
    r"\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|%|/s)?\s*$"
)
_STATUS_IN = re.compile(r"^\s*status\s+in\s+(?P<codes>\d{3}(?:\s*,\s*\d{3})*)\s*$")


@dataclass(frozen=True)
class Threshold:
    """One ``--threshold``: a latency statistic, the rate, the failure share, or a status set.

    Latency values are in ms unless written with ``s``; ``failed`` is the share of requests
    answered outside the scenario's allowed statuses (``failed<1%``), ``rate`` requests/s.
    """

    text: str
    metric: str
    op: str = ""
    value: float = 0.0
    statuses: frozenset[int] = frozenset()

    def measure(self, stats: Stats) -> float | None:
        if self.metric == "rate":
            return stats.rate_per_s
        if self.metric == "requests":
            return float(stats.requests)
        if self.metric == "failed":
            return stats.failed_share
        return stats.latency_ms.get(self.metric)

    def evaluate(self, stats: Stats) -> tuple[bool, str]:
        """(passed, what was measured) for a finished run."""
        if self.metric == "status":
            outside = {s: n for s, n in stats.statuses.items() if s not in self.statuses}
            seen = ", ".join(f"{s}×{n:,}" for s, n in sorted(stats.statuses.items()))
            return not outside, f"statuses {seen or 'none'}"
        found = self.measure(stats)
        if found is None:
            return False, f"{self.metric} not measured"
        unit = {"rate": "/s", "requests": "", "failed": ""}.get(self.metric, " ms")
        shown = f"{found:.2%}" if self.metric == "failed" else f"{found:,.2f}{unit}"
        return _OPS[self.op](found, self.value), f"{self.metric}={shown}"


def parse_threshold(text: str) -> Threshold:
    statuses = _STATUS_IN.match(text)
    if statuses:
        codes = frozenset(int(c) for c in statuses["codes"].split(","))
        return Threshold(text, "status", statuses=codes)
    found = _METRIC.match(text)
    if found is None:
        raise ValueError(
            f"not a threshold: {text!r} (examples: 'p95<500ms', 'p(99)<=1s', 'max<2s', "
            "'avg<100', 'rate>1000', 'failed<1%', 'status in 201,409')"
        )
    value = float(found["value"])
    unit = found["unit"]
    metric = found["metric"]
    if found["p"] is not None:
        metric = "p" + _percentile_name(float(found["p"]))
    if metric in ("avg", "min", "med", "max") or metric.startswith("p"):
        if unit == "s":
            value *= 1000.0
        elif unit not in (None, "ms"):
            raise ValueError(f"{text!r}: latency is in ms or s")
    elif metric == "failed":
        if unit == "%":
            value /= 100.0
        elif unit is not None:
            raise ValueError(f"{text!r}: failed is a share, e.g. failed<1%")
    elif unit not in (None, "/s"):
        raise ValueError(f"{text!r}: {metric} takes no unit")
    return Threshold(text, metric, found["op"], value)


def _percentile_name(p: float) -> str:
    return str(int(p)) if p == math.floor(p) else str(p)


@dataclass
class Stats:
    """The figures thresholds are evaluated on (filled in by ``summary``)."""

    requests: int
    rate_per_s: float
    statuses: dict[int, int]
    latency_ms: dict[str, float]
    failed_share: float


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Mix:
    """What a ``shop`` buyer does with a hold; the rest of the holds are walked away from."""

    confirm: float = 0.6
    release: float = 0.2
    lines_max: int = 3
    quantity_max: int = 2
    reads: int = 1
    zipf_s: float = 1.1


@dataclass(frozen=True)
class Plan:
    """One load run, the same for the service and for the ``--calibrate`` echo."""

    scenario: str
    vus: int
    duration_s: float
    stages: tuple[Stage, ...] = ()
    buyers: int = 0
    in_flight: int = 0
    rate: float | None = None
    think_s: float = 0.0
    ttl_s: int | None = None
    timeout_s: float = 60.0
    mix: Mix = field(default_factory=Mix)

    @property
    def planned_s(self) -> float | None:
        """How long the load lasts when that is known beforehand (``flash`` runs until done,
        unless it has an arrival rate)."""
        if self.scenario == "peak":
            return sum(stage.duration_s for stage in self.stages)
        if self.scenario == "flash":
            return self.buyers / self.rate if self.rate else None
        return self.duration_s

    @property
    def vus_max(self) -> int:
        if self.scenario == "peak":
            return max((stage.target for stage in self.stages), default=0)
        if self.scenario == "flash":
            return self.in_flight
        return self.vus

    def describe(self) -> str:
        if self.scenario == "peak":
            ramp = " → ".join(f"{s.target} VUs in {s.duration_s:g} s" for s in self.stages)
            what = f"ramping {ramp}"
        elif self.scenario == "flash":
            what = f"{self.buyers:,} buyers once each, {self.in_flight:,} in flight"
        else:
            what = f"{self.vus:,} VUs for {self.duration_s:g} s"
        if self.rate:
            what += f", arrivals at {self.rate:,.0f}/s"
        if self.think_s:
            what += f", think {self.think_s:g} s"
        return what
