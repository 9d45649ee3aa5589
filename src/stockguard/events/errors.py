"""The events package's one error a caller can see (mapped in ``stockguard.problems``)."""

from __future__ import annotations

from stockguard.domain import StockguardError


class WebhookNotFound(StockguardError):
    """No webhook endpoint (or dead letter) by that id: 404 ``webhook-not-found``."""

    kind = "webhook-not-found"

    def __init__(self, what: str) -> None:
        super().__init__(f"no {what}")
        self.what = what
