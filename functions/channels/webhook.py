"""A generic outgoing webhook: each event is POSTed as JSON, signed with HMAC-SHA256.

Headers::

    X-CryoSpy-Timestamp: 1767225600                 (Unix seconds when the request was signed)
    X-CryoSpy-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

A receiver recomputes the HMAC over the timestamp, a dot and the raw body bytes as received, compares in
constant time, and refuses timestamps more than 5 minutes from its clock (a replayed request). The recipe, in
a few lines of Python, is in docs/home-events.md; :func:`verify_signature` is the same recipe and is what the
tests run against real requests. A 2xx answer is delivered; anything else is retried with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

from .errors import SignatureError
from .event import HomeEvent
from .http_post import post
from .hub import Connectionless
from .settings import HttpSettings

TIMESTAMP_HEADER = "X-CryoSpy-Timestamp"
SIGNATURE_HEADER = "X-CryoSpy-Signature"
TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, signature: str, body: bytes, *, now: float | None = None,
                     tolerance_s: int = TOLERANCE_S) -> None:
    """Raise SignatureError unless ``signature`` signs ``body`` at ``timestamp`` within the tolerance."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        raise SignatureError("the timestamp header is not a number of seconds") from None
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        raise SignatureError(f"the timestamp is more than {tolerance_s} s from now: a replay or a wrong clock")
    if not hmac.compare_digest(sign(secret, ts, body), signature or ""):
        raise SignatureError("the signature does not match the body (changed body or wrong secret)")


class WebhookChannel(Connectionless):
    name = "webhook"

    def __init__(self, settings: HttpSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock

    def deliver(self, event: HomeEvent) -> None:
        body = json.dumps(event.payload(), separators=(",", ":")).encode()
        ts = int(self.clock())
        post(self.settings, "webhook receiver", body, {
            "Content-Type": "application/json", TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(self.settings.secret, ts, body)})
