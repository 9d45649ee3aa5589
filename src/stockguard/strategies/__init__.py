"""Concurrency strategies, one module each, chosen by name (docs/design.md#strategies).

Modules are imported only when their strategy is chosen, so a strategy's extra
dependencies (Redis…) are needed only by those who use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stockguard.stores.contract import Store
    from stockguard.strategies.base import Strategy

_REGISTRY: dict[str, str] = {
    "conditional": "stockguard.strategies.conditional:ConditionalStrategy",
    "pessimistic": "stockguard.strategies.pessimistic:PessimisticStrategy",
    "optimistic": "stockguard.strategies.optimistic:OptimisticStrategy",
    "coalescing": "stockguard.strategies.coalescing:CoalescingStrategy",
    "sharded": "stockguard.strategies.sharded:ShardedStrategy",
    "redis": "stockguard.strategies.redis:RedisStrategy",
    "queue": "stockguard.strategies.queue:QueueStrategy",
}

DEFAULT_STRATEGY = "coalescing"
"""The fastest strategy needing nothing beyond the SQL database (docs/design.md#strategies):
in ``stockguard bench``'s flash sale it answers 50-100x the per-request strategies."""
SQL_STRATEGIES = ("conditional", "pessimistic", "optimistic", "coalescing", "sharded")
"""Strategies that need nothing but the SQL database."""
MEMORY_STRATEGIES = ("conditional", "pessimistic", "optimistic", "coalescing")
"""Strategies that run on the in-memory store (``Engine.open("memory://")``): they need
nothing but the store contract (``stores/contract.py``)."""


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; choose one of {', '.join(_REGISTRY)}"
        ) from None
    module_name, class_name = target.split(":")
    cls: type[Strategy] = getattr(importlib.import_module(module_name), class_name)
    return cls


def create(name: str, store: Store, **options: Any) -> Strategy:
    return strategy_class(name)(store, **options)
