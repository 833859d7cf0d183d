"""Upload slots per device per minute: a token bucket per device, in memory (in PostgreSQL with
``database_url``, so that the budget is the deployment's, not each runtime's: pg_slot_limiter.py).

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
from typing import Protocol

from cryospy.functions.errors import TooManyRequests

DEFAULT_PER_MINUTE = 120


class SlotBudget(Protocol):
    """What the slot route asks: this limiter, or the one in PostgreSQL shared by runtimes."""

    def take(self, device_id: str) -> None: ...

    def close(self) -> None: ...


def spend(bucket: tuple[float, float] | None, now: float, per_minute: int, device_id: str) -> tuple[float, float]:
    """A device's bucket ``(tokens, at)`` (None: never used, so full) after one slot is spent at ``now``; raises
    TooManyRequests, saying when to come back, when less than one slot has refilled. Shared by this
    limiter and the one in PostgreSQL (pg_slot_limiter.py)."""
    rate = per_minute / 60.0
    tokens, at = bucket if bucket is not None else (float(per_minute), now)
    tokens = min(float(per_minute), tokens + max(0.0, now - at) * rate)
    if tokens < 1.0:
        wait = (1.0 - tokens) / rate
        raise TooManyRequests(f"device {device_id!r} asked for more than {per_minute} upload slots a "
                              f"minute; keep the clip and ask again in {wait:.0f} s")
    return tokens - 1.0, now


class SlotLimiter:
    def __init__(self, per_minute: int = DEFAULT_PER_MINUTE, monotonic: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}   # device -> (tokens, at)

    def take(self, device_id: str) -> None:
        """Spend one slot of the device's budget, or raise TooManyRequests saying when to come back."""
        now = self._monotonic()
        with self._lock:
            self._buckets[device_id] = spend(self._buckets.get(device_id), now, self.per_minute, device_id)

    def close(self) -> None:
        """Nothing to release (the limiter in PostgreSQL closes its pool)."""
