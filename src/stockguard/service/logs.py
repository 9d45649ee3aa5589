"""One log format for every line ``serve`` writes once it runs: granian's, stockguard's,
and the per-request access line.

``Settings.log_format`` picks JSON (one object a line) or logfmt (``key=value`` pairs);
both carry ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and ``msg``,
then the record's ``fields`` (``logging``'s ``extra={"fields": {...}}``): the access line
puts its method, path, status, duration and order id there, and ``request_id`` when a
request is being answered (``middleware.RequestEdge`` sets it). ``dict_config``
is the ``log_dictconfig`` granian applies in its parent and in every worker.

Start-up failures are not log lines: they happen before the service runs and are written
for the person at the terminal (service/startup.py).
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from typing import Any

from stockguard.config import LogFormat

ACCESS_LOGGER = "stockguard.http"
REQUEST_ID_LEN_MAX = 128

request_id: ContextVar[str | None] = ContextVar("stockguard_request_id", default=None)
"""The id of the request being answered (set by ``middleware.RequestEdge`` when it has
one): every line logged meanwhile carries it."""


def _timestamp(record: logging.LogRecord) -> str:
    seconds = int(record.created)
    millis = int((record.created - seconds) * 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    line: dict[str, Any] = {
        "ts": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    extra = record.__dict__.get("fields")
    if isinstance(extra, dict):
        line.update(extra)
    current = request_id.get()
    if current is not None:
        line["request_id"] = current
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = _fields(record)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' ="\\') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = _fields(record)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in line.items())


FORMATTERS: dict[str, type[logging.Formatter]] = {
    "json": JsonFormatter,
    "logfmt": LogfmtFormatter,
}


def dict_config(log_format: LogFormat, *, access_log: bool) -> dict[str, Any]:
    """Granian's and stockguard's loggers on stderr, the access line (only with
    ``access_log``) on stdout, all in ``log_format``. Granian's own access line stays off:
    stockguard's carries the request and order ids."""
    formatter = f"{FORMATTERS[log_format].__module__}.{FORMATTERS[log_format].__qualname__}"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": formatter}},
        "handlers": {
            "errors": {
                "class": "logging.StreamHandler",
                "formatter": "structured",
                "stream": "ext://sys.stderr",
            },
            "requests": {
                "class": "logging.StreamHandler",
                "formatter": "structured",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "_granian": {"handlers": ["errors"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["requests"], "level": "WARNING", "propagate": False},
            "stockguard": {"handlers": ["errors"], "level": "INFO", "propagate": False},
            ACCESS_LOGGER: {
                "handlers": ["requests"],
                "level": "INFO" if access_log else "WARNING",
                "propagate": False,
            },
        },
        "root": {"handlers": ["errors"], "level": "WARNING"},
    }
