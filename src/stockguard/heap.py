"""Garbage-collector settings of a long-running stockguard process (``serve``, ``bench``).

A flash sale allocates container objects (futures, coroutine frames, the tracebacks of
refusals) fast enough that CPython's default gen-0 threshold of 700 runs a collection
every few dozen requests, and the occasional full collection walks the whole heap
(SQLAlchemy, drivers, FastAPI: tens of milliseconds, inside some request's latency).
Measured without a database: 3.5 µs of a ~16 µs reservation path went to collections
that found nothing, because the request path makes no reference cycles (the code
unbinds caught errors for exactly that reason). Collecting less often therefore costs a
little memory and no correctness. After start-up a process:

1. freezes the start-up heap (``gc.freeze``): it moves to a generation no collection
   walks, as Instagram's servers do after fork;
2. raises the gen-0 threshold to ``GC_GEN0_THRESHOLD`` container allocations.
"""

from __future__ import annotations

import gc

GC_GEN0_THRESHOLD = 20_000
"""Container allocations between young collections: at most a few MB of young objects."""

Thresholds = tuple[int, int, int]


def settle() -> Thresholds:
    """Freezes what start-up allocated and collects less often; returns the old thresholds."""
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, previous[1], previous[2])
    return previous


def unsettle(previous: Thresholds) -> None:
    """Undoes ``settle`` (the benchmark, between runs that each start afresh)."""
    gc.set_threshold(*previous)
    gc.unfreeze()
