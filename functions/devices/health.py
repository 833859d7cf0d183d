"""What devices report about themselves (last seen, last heartbeat): kept in memory, written behind.

Why not in the device registry: the registry is one TinyDB file, and TinyDB rewrites (and here fsyncs) the
whole file on every change. A heartbeat that wrote through rewrote every device's record under the registry
lock that every device request takes to authenticate, so one camera's heartbeats slowed every other camera
(bench/bench_heartbeat.py: during 64 heartbeats another camera's median API latency went from 0.5 ms to
8-11.5 ms; now 2.6-3.2 ms, which is the CPU the heartbeat requests themselves take on two cores).

So a heartbeat only changes memory (O(1) under a lock of its own). The whole table is written to its own
file at most once per ``persist_seconds`` by whichever request comes after the interval, and at shutdown.
What a crash can lose is at most that interval of health reports, which the next heartbeat repeats; nothing
a device is allowed to do (its secret, key, settings) lives here.

With ``database_url`` the registry uses :class:`~cryospy.functions.devices.pg_health.PostgresDeviceHealth`
instead, which every runtime shares; :class:`HealthStore` is what both offer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cryospy.common.atomic import write_atomic

log = logging.getLogger(__name__)
FIELDS = ("last_seen", "heartbeat")


def apply_report(table: dict[str, dict[str, Any]], device_id: str, seen_at: str,
                 heartbeat: dict[str, Any] | None) -> None:
    """Lay one report over the device's entry: seen now, and the heartbeat (stamped) if there is one."""
    entry = table.setdefault(device_id, {"last_seen": None, "heartbeat": None})
    entry["last_seen"] = seen_at
    if heartbeat is not None:
        entry["heartbeat"] = {**heartbeat, "received_at": seen_at}


class HealthStore(Protocol):
    def get(self, device_id: str) -> dict[str, Any] | None:
        """The device's newest report: ``{"last_seen": stamp, "heartbeat": {..., "received_at": stamp}}``."""
        ...

    def record(self, device_id: str, seen_at: str, heartbeat: dict[str, Any] | None) -> None: ...

    def forget(self, device_id: str) -> None: ...

    def flush(self, wait: bool = True) -> None:
        """Write what is held in memory (at shutdown)."""
        ...

    def close(self) -> None: ...


class DeviceHealth:
    def __init__(self, path: Path, persist_seconds: float = 30.0, monotonic: Callable[[], float] = time.monotonic):
        self.path = path
        self.persist_seconds = persist_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._table: dict[str, dict[str, Any]] = self._load()
        self._dirty = False
        self._written_at = monotonic()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Only health reports: start empty (the next heartbeats refill it) rather than refuse to serve.
            log.warning("ignoring unreadable %s (%s); device health refills from the next heartbeats", self.path, exc)
            return {}
        return {k: {f: v.get(f) for f in FIELDS} for k, v in doc.items() if isinstance(v, dict)} \
            if isinstance(doc, dict) else {}

    def get(self, device_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._table.get(device_id)
            return dict(entry) if entry is not None else None

    def record(self, device_id: str, seen_at: str, heartbeat: dict[str, Any] | None) -> None:
        with self._lock:
            apply_report(self._table, device_id, seen_at, heartbeat)
            self._dirty = True
            due = self._monotonic() - self._written_at >= self.persist_seconds
        if due:
            self.flush(wait=False)

    def forget(self, device_id: str) -> None:
        with self._lock:
            self._dirty = self._table.pop(device_id, None) is not None or self._dirty

    def flush(self, wait: bool = True) -> None:
        """Write the table if it changed. One writer at a time; a request (``wait=False``) that finds a write
        under way leaves it to that one or to a later request."""
        if not self._write_lock.acquire(blocking=wait):
            return
        try:
            with self._lock:
                if not self._dirty:
                    return
                data = json.dumps(self._table, separators=(",", ":")).encode()
                self._dirty = False
                self._written_at = self._monotonic()
            write_atomic(self.path, data)
        finally:
            self._write_lock.release()

    def close(self) -> None:
        self.flush()
