"""Standard Webhooks signatures (https://www.standardwebhooks.com/, docs/events.md#signatures).

Each POST carries ``webhook-id`` (the event id: a receiver de-duplicates on it),
``webhook-timestamp`` (integer seconds; a receiver refuses old ones, which stops replays)
and ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with
the base64-decoded part of the endpoint's ``whsec_`` secret. Any Standard Webhooks
library verifies them; docs/events.md shows the dozen lines that do it by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from stockguard.events.state import SECRET_PREFIX

USER_AGENT = "stockguard-webhooks/1"


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(key: bytes, message_id: str, timestamp_s: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message, keyed with ``secret_key``
    of the endpoint's secret (the relay decodes it once per endpoint, not per POST)."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp_s, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(message_id: str, timestamp_s: int, signature: str) -> dict[str, str]:
    """The headers of a POST through httpx (the raw client writes the same ones)."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature,
        "user-agent": USER_AGENT,
    }
