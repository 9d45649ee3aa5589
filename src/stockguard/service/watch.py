"""The SKUs the admin page's drop view is watching, shared by every worker of one ``serve``.

Counting reservations per SKU for every SKU would give a label per SKU code a buyer can
invent, so the engine counts one by one only the SKUs in ``Engine.watched``, and this
module decides that set. The page asks for a SKU's figures every second; each ask marks
the SKU watched for ``WATCH_TTL_S`` more. With one process the marks are kept here in
memory. With several workers a poll reaches one of them while buyers reach all, so the
marks are files in the Prometheus multi-process directory that ``serve`` already shares
between its workers (one empty file per SKU, its mtime the last ask), and every worker
re-reads them every ``REFRESH_S``.

The figures are read the way ``/metrics`` reads everything: with several workers,
prometheus_client's ``MultiProcessCollector`` sums the counters every worker writes
into that directory, so whichever worker answers the page answers for all of them.

Series in the multi-process files cannot be deleted while ``serve`` runs, so the number
of SKUs one run ever counts is capped (``SKUS_MAX``); past it a new SKU is refused with
a message, and the SKUs already counted can still be watched.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from stockguard import metrics
from stockguard.engine import Engine
from stockguard.service.periodic import Periodic

log = logging.getLogger("stockguard.watch")

WATCH_TTL_S = 30.0
"""A SKU stays watched this long after the page last asked for it (the page asks every
second; a closed tab stops the counting half a minute later)."""
REFRESH_S = 0.5
"""How often each worker re-reads the shared list: how late the others start counting."""
SKUS_MAX = 16
"""Distinct SKUs one ``serve`` run may ever count: each brings about 20 series (its
outcomes and latency buckets), which stay until the run ends."""
DIRECTORY_NAME = "drop-watch"
"""The shared list's directory inside the Prometheus multi-process directory."""
LOCK_NAME = ".lock"

_FIGURE_NAMES = {
    "stockguard_sku_reservations",
    "stockguard_sku_reserve_duration_seconds",
    "stockguard_sku_watched",
}


class WatchFull(Exception):
    """This run already counts ``SKUS_MAX`` SKUs; a new one would add series for good."""


@dataclass(frozen=True, slots=True)
class SkuFigures:
    """One SKU's drop-view totals, summed over the workers, since the run began to count it.

    The page turns two readings into rates (like Prometheus's ``rate``), so nothing here
    depends on which worker answered or when it started.
    """

    outcomes: dict[str, float] = field(default_factory=dict)
    """Requests by outcome: held, replayed, out-of-stock, overloaded, …"""
    latency_le_s: tuple[float, ...] = ()
    """Upper bounds of the latency buckets, +Inf last."""
    latency_counts: tuple[float, ...] = ()
    """Requests at or under each bound (cumulative, as Prometheus keeps them)."""
    latency_sum_s: float = 0.0
    counting: int = 0
    """Processes counting this SKU right now."""


class SkuWatch(Periodic):
    """Keeps ``engine.watched`` in step with the SKUs being watched, in this process."""

    name = "stockguard-drop-watch"

    def __init__(
        self,
        engine: Engine,
        metrics_dir: Path | None,
        *,
        clock: Callable[[], float] = time.time,
        ttl_s: float = WATCH_TTL_S,
        skus_max: int = SKUS_MAX,
        refresh_s: float = REFRESH_S,
    ) -> None:
        """``metrics_dir``: the Prometheus multi-process directory of a ``serve`` with
        several workers (the list is shared there), or None for one process."""
        super().__init__(refresh_s)
        self.engine = engine
        self.metrics_dir = metrics_dir
        self.directory = None if metrics_dir is None else metrics_dir / DIRECTORY_NAME
        if self.directory is not None:
            self.directory.mkdir(exist_ok=True)
        self.clock = clock
        self.ttl_s = ttl_s
        self.skus_max = skus_max
        self._asked_at: dict[str, float] = {}
        """One process: when each SKU was last asked for (every SKU ever counted)."""

    def start(self) -> None:
        self.refresh()  # a worker started mid-drop counts from its first request
        super().start()

    async def tick(self) -> None:
        self.refresh()

    # ------------------------------------------------------------------ the list

    def watch(self, sku: str) -> None:
        """Marks ``sku`` watched for ``ttl_s`` more; this process counts it at once.

        Raises ``WatchFull`` for a SKU this run has never counted once ``skus_max`` have
        been. The caller checks the SKU exists first: only real SKUs take a place.
        """
        now = self.clock()
        if self.directory is None:
            if sku not in self._asked_at and len(self._asked_at) >= self.skus_max:
                raise WatchFull(sku)
            self._asked_at[sku] = now
        else:
            path = self.directory / sku.encode().hex()
            try:
                os.utime(path, (now, now))
            except FileNotFoundError:
                with self._locked():
                    if not path.exists():
                        if len(self._entries()) >= self.skus_max:
                            raise WatchFull(sku) from None
                        path.touch()
                    os.utime(path, (now, now))
        self.refresh()

    def refresh(self) -> None:
        """Sets ``engine.watched`` to the SKUs asked for within ``ttl_s``."""
        try:
            active = frozenset(self._active(self.clock()))
        except OSError as error:  # the directory went with a stopping serve
            log.warning("drop view: cannot read the watched SKUs: %s", error)
            return
        before = self.engine.watched
        if active == before:
            return
        for sku in active - before:
            metrics.SKU_WATCHED.labels(sku).set(1)
        for sku in before - active:
            metrics.SKU_WATCHED.labels(sku).set(0)
        self.engine.watched = active

    def _active(self, now: float) -> Iterator[str]:
        if self.directory is None:
            for sku, asked_at in self._asked_at.items():
                if now - asked_at < self.ttl_s:
                    yield sku
            return
        for entry in self._entries():
            try:
                sku = bytes.fromhex(entry.name).decode()
            except ValueError:  # not a file this module made: ignored, never fatal
                continue
            if now - entry.stat().st_mtime < self.ttl_s:
                yield sku

    def _entries(self) -> list[os.DirEntry[str]]:
        assert self.directory is not None
        with os.scandir(self.directory) as entries:
            return [entry for entry in entries if entry.name != LOCK_NAME]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Workers adding SKUs at the same moment still add at most ``skus_max``."""
        assert self.directory is not None
        with (self.directory / LOCK_NAME).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ the figures

    def figures(self, sku: str) -> SkuFigures:
        """``sku``'s totals over every worker, read as ``/metrics`` reads them."""
        outcomes: dict[str, float] = {}
        buckets: dict[float, float] = {}
        latency_sum_s = 0.0
        counting = 0.0
        for family in self._families():
            for sample in family.samples:
                if sample.labels.get("sku") != sku:
                    continue
                if sample.name == "stockguard_sku_reservations_total":
                    outcome = sample.labels["outcome"]
                    outcomes[outcome] = outcomes.get(outcome, 0.0) + sample.value
                elif sample.name == "stockguard_sku_reserve_duration_seconds_bucket":
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
                elif sample.name == "stockguard_sku_reserve_duration_seconds_sum":
                    latency_sum_s += sample.value
                elif sample.name == "stockguard_sku_watched":
                    counting += sample.value
        bounds = tuple(sorted(buckets))
        return SkuFigures(
            outcomes=outcomes,
            latency_le_s=bounds,
            latency_counts=tuple(buckets[bound] for bound in bounds),
            latency_sum_s=latency_sum_s,
            counting=round(counting),
        )

    def _families(self) -> Iterable[Metric]:
        if self.metrics_dir is None:
            for metric in (
                metrics.SKU_RESERVATIONS,
                metrics.SKU_RESERVE_SECONDS,
                metrics.SKU_WATCHED,
            ):
                yield from metric.collect()
            return
        collector = MultiProcessCollector(None, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        for family in collector.collect():  # type: ignore[no-untyped-call]
            if family.name in _FIGURE_NAMES:
                yield family
