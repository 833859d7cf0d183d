"""Persisted rate limits for alerts: at most one mail per device and kind per interval, across restarts.

A claim is taken before the mail is sent and released if sending fails, so a burst of events (ten clips with
motion in a minute, replayed deliveries) produces one mail, and an SMTP outage does not swallow the next one.

:class:`AlertLimitStore` is what the alert rules use; :class:`AlertLimits` (SQLite in the data directory) is
the embedded default and :class:`~cryospy.functions.alerts.pg_limits.PostgresAlertLimits` the one several
runtimes share (``database_url``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class AlertLimitStore(Protocol):
    def claim(self, device_id: str, kind: str, min_interval_s: float) -> bool:
        """True when an alert of this kind for this device may go out now (and records that it did)."""
        ...

    def release(self, device_id: str, kind: str) -> None:
        """Forget the claim (the mail did not go out)."""
        ...

    def close(self) -> None: ...


class AlertLimits:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS sent (device TEXT, kind TEXT, at REAL, "
                         "PRIMARY KEY (device, kind))")
        self._lock = threading.Lock()
        self._clock = clock

    def claim(self, device_id: str, kind: str, min_interval_s: float) -> bool:
        """True when an alert of this kind for this device may go out now (and records that it did)."""
        now = self._clock()
        with self._lock:
            row = self._db.execute("SELECT at FROM sent WHERE device=? AND kind=?", (device_id, kind)).fetchone()
            if row is not None and now - row[0] < min_interval_s:
                return False
            self._db.execute("INSERT OR REPLACE INTO sent(device, kind, at) VALUES (?,?,?)", (device_id, kind, now))
            return True

    def release(self, device_id: str, kind: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sent WHERE device=? AND kind=?", (device_id, kind))

    def close(self) -> None:
        with self._lock:
            self._db.close()
