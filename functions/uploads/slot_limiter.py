"""Upload slots per device per minute: a token bucket per device, in memory.

Each slot lets a camera put up to ``max_clip_megabytes`` into the bucket, and an upload that fails
verification is kept in quarantine. The quarantine cap bounds what stays on disk; this bounds how fast a
compromised camera can churn it. The default (120 a minute, bursts of 120) is far above what a camera
recording clips of two seconds or more needs even while it drains a spool after an outage; a refused agent
keeps the clip in its spool and retries (429 is a "retry later" answer), so nothing is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cryospy.functions.errors import TooManyRequests

DEFAULT_PER_MINUTE = 120


class SlotLimiter:
    def __init__(self, per_minute: int = DEFAULT_PER_MINUTE, monotonic: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}   # device -> (tokens, at)

    def take(self, device_id: str) -> None:
        """Spend one slot of the device's budget, or raise TooManyRequests saying when to come back."""
        now = self._monotonic()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.get(device_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * rate)
            if tokens < 1.0:
                self._buckets[device_id] = (tokens, now)
                wait = (1.0 - tokens) / rate
                raise TooManyRequests(f"device {device_id!r} asked for more than {self.per_minute} upload slots a "
                                      f"minute; keep the clip and ask again in {wait:.0f} s")
            self._buckets[device_id] = (tokens - 1.0, now)
