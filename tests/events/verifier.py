"""A stand-alone Standard Webhooks verifier, as docs/events.md#signatures shows it: a
receiver needs nothing of stockguard's to check what stockguard sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


class InvalidSignature(Exception):
    pass


TOLERANCE_S = 300


def verify(secret: str, headers: dict[str, str], body: bytes, now_s: float | None = None) -> None:
    """Raises InvalidSignature unless ``body`` was signed with ``secret`` within 5 minutes."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    now = time.time() if now_s is None else now_s
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise InvalidSignature("timestamp too old or too new")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return
    raise InvalidSignature("no matching v1 signature")
