"""Prometheus metrics the engine and strategies count (exported by the service)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

RESERVATIONS = Counter(
    "stockguard_reservations_total",
    "Reservation requests by outcome (held, replayed, out-of-stock, idempotency-conflict…)",
    ["outcome"],
)

_RESERVATION_OUTCOMES: dict[str, Counter] = {}


def reservation_outcome(outcome: str) -> Counter:
    """The RESERVATIONS child for ``outcome``, bound once: ``labels()`` takes a lock and
    checks its arguments on every call, a measurable part of a refusal in a flash sale."""
    child = _RESERVATION_OUTCOMES.get(outcome)
    if child is None:
        child = _RESERVATION_OUTCOMES[outcome] = RESERVATIONS.labels(outcome=outcome)
    return child


TRANSITIONS = Counter(
    "stockguard_reservation_transitions_total",
    "Confirm and release calls by the status the reservation ended in",
    ["status"],
)
EXPIRED = Counter("stockguard_reservations_expired_total", "Reservations ended by expiry sweeps")

# ---------------------------------------------------------------------------- HTTP service
# Labels are bounded: ``route`` is the route template ("/v1/reservations/{reservation_id}")
# or "unmatched", never the raw path, so a scan of random URLs cannot grow the series.

HTTP_REQUESTS = Counter(
    "stockguard_http_requests_total",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""Upper bounds of the latency histograms (the HTTP one and the drop view's per SKU)."""

HTTP_LATENCY = Histogram(
    "stockguard_http_request_duration_seconds",
    "Time from request start to the end of the answer, by route template, method and status",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS_S,
)
_HTTP_CHILDREN: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def http_answered(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The HTTP_REQUESTS and HTTP_LATENCY children for one label set, bound once (see
    ``reservation_outcome``). Routes are templates, so the cache stays small."""
    key = (route, method, status)
    children = _HTTP_CHILDREN.get(key)
    if children is None:
        labels = (route, method, str(status))
        children = _HTTP_CHILDREN[key] = (
            HTTP_REQUESTS.labels(*labels),
            HTTP_LATENCY.labels(*labels),
        )
    return children


HTTP_IN_FLIGHT = Gauge(
    "stockguard_http_requests_in_flight",
    "HTTP requests being answered right now (summed over live workers)",
    multiprocess_mode="livesum",
)
AUDITS = Counter(
    "stockguard_audits_total",
    "Live invariant audits by outcome (ok, violations, failed)",
    ["outcome"],
)
INVARIANT_VIOLATIONS = Gauge(
    "stockguard_invariant_violations",
    "Violations the last live audit found, by invariant (I1-I4, buckets): must be 0",
    ["invariant"],
    multiprocess_mode="max",
)
SWEEPS = Counter(
    "stockguard_expiry_sweeps_total",
    "Background expiry sweeps by outcome (ok, failed)",
    ["outcome"],
)
STRATEGY_EVENTS = Counter(
    "stockguard_strategy_events_total",
    "Events a strategy counts (optimistic_retries, optimistic_exhausted, batches…)",
    ["strategy", "event"],
)


class StrategyEventMirror:
    """Copies a strategy's in-memory ``counters`` into STRATEGY_EVENTS.

    Strategies count events in a plain ``Counter`` so that they need no Prometheus
    import; a custom collector would be invisible in multi-process mode, so the deltas
    are pushed into a real counter instead, whenever ``sync`` runs (each sweep, each
    scrape).
    """

    def __init__(self, strategy_name: str, counters: Mapping[str, int]) -> None:
        self.strategy_name = strategy_name
        self.counters = counters
        self.exported: dict[str, int] = {}

    def sync(self) -> None:
        for event, value in tuple(self.counters.items()):
            delta = value - self.exported.get(event, 0)
            if delta > 0:
                STRATEGY_EVENTS.labels(self.strategy_name, event).inc(delta)
                self.exported[event] = value


# ---------------------------------------------------------------------------- admission
# What the sold-out fast path saves is visible here: ``stockguard_soldout_fastpath_total``
# requests were answered without reaching the strategy (no stock-row lock, no write), for
# ``stockguard_admission_total{outcome="lookup"}`` shared read-only order_id look-ups.

ADMISSION = Counter(
    "stockguard_admission_total",
    "Reservation admission: passed (to the strategy), overloaded (refused by a cap), "
    "lookup (one read-only order_id look-up shared by a batch of fast-path requests)",
    ["outcome"],
)
SOLDOUT_FASTPATH = Counter(
    "stockguard_soldout_fastpath_total",
    "Reservation requests answered by the sold-out fast path, without their strategy",
)

# ---------------------------------------------------------------------------- redis strategy
# Set by whichever process holds the persister lease ("max" over processes: the others
# leave the series alone).

REDIS_PERSIST_LAG_EVENTS = Gauge(
    "stockguard_redis_persist_lag_events",
    "Events in the Redis stream not yet written into SQL (delivered and undelivered)",
    multiprocess_mode="max",
)
REDIS_PERSIST_LAG_MS = Gauge(
    "stockguard_redis_persist_lag_ms",
    "Age of the oldest event in the Redis stream not yet written into SQL",
    multiprocess_mode="max",
)
REDIS_PERSISTED = Counter(
    "stockguard_redis_events_persisted_total",
    "Redis stream events written into SQL by the persister",
)
REDIS_DEAD_LETTERS = Gauge(
    "stockguard_redis_dead_letters",
    "Events in the dead-letter stream: poison the persister could not apply (must be 0)",
    multiprocess_mode="max",
)
QUEUE_DEPTH = Gauge(
    "stockguard_queue_depth",
    "Reservation requests waiting in a queue-strategy partition",
    ["partition"],
    multiprocess_mode="max",
)

# ---------------------------------------------------------------------------- drop view
# Per-SKU figures for the admin page's drop view (admin/drop.py). A ``sku`` label on every
# reservation would let any buyer who invents SKU codes grow the series without end, so
# only SKUs someone is watching are counted (``service/watch.py`` decides which, and caps
# how many one ``serve`` run may ever count at ``watch.SKUS_MAX``). Like the others, they
# are summed over workers by the multi-process directory, and so shown on /metrics too.

SKU_RESERVATIONS = Counter(
    "stockguard_sku_reservations_total",
    "Reservation requests naming a watched SKU, by SKU and outcome (drop view)",
    ["sku", "outcome"],
)
SKU_RESERVE_SECONDS = Histogram(
    "stockguard_sku_reserve_duration_seconds",
    "Time inside the engine (admission, strategy, database) of reservations naming a "
    "watched SKU (drop view)",
    ["sku"],
    buckets=LATENCY_BUCKETS_S,
)
SKU_WATCHED = Gauge(
    "stockguard_sku_watched",
    "Processes counting this SKU for the drop view right now (summed over live workers)",
    ["sku"],
    multiprocess_mode="livesum",
)
_SKU_OUTCOMES: dict[tuple[str, str], Counter] = {}
_SKU_LATENCIES: dict[str, Histogram] = {}


def sku_reserved(sku: str, outcome: str, duration_s: float) -> None:
    """Counts one reservation request naming the watched ``sku`` (children bound once, as
    ``reservation_outcome`` does)."""
    counter = _SKU_OUTCOMES.get((sku, outcome))
    if counter is None:
        counter = _SKU_OUTCOMES[sku, outcome] = SKU_RESERVATIONS.labels(sku, outcome)
    counter.inc()
    latency = _SKU_LATENCIES.get(sku)
    if latency is None:
        latency = _SKU_LATENCIES[sku] = SKU_RESERVE_SECONDS.labels(sku)
    latency.observe(duration_s)


# ---------------------------------------------------------------------------- events relay
# Set by the process that holds the relay lease ("livemax": a process that loses the lease
# sets them to 0, a dead one drops out), counted by whichever process delivers.

OUTBOX_LAG_EVENTS = Gauge(
    "stockguard_outbox_lag_events",
    "Committed events not yet delivered to the slowest active sink (unnumbered ones "
    "included; an endpoint's type filter is not subtracted)",
    multiprocess_mode="livemax",
)
OUTBOX_LAG_SECONDS = Gauge(
    "stockguard_outbox_lag_seconds",
    "Age of the oldest committed event not yet numbered or not yet delivered to a sink",
    multiprocess_mode="livemax",
)
EVENT_DELIVERIES = Counter(
    "stockguard_event_deliveries_total",
    "Event delivery attempts by sink (webhook, nats) and outcome (delivered, failed, "
    "dead, redelivered)",
    ["sink", "outcome"],
)
_DELIVERY_CHILDREN: dict[tuple[str, str], Counter] = {}


def event_delivered(sink: str, outcome: str, count: int = 1) -> None:
    child = _DELIVERY_CHILDREN.get((sink, outcome))
    if child is None:
        child = _DELIVERY_CHILDREN[sink, outcome] = EVENT_DELIVERIES.labels(sink, outcome)
    child.inc(count)
