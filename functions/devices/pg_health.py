"""Device health (last seen, last heartbeat) in PostgreSQL (``database_url``): the freshest report from any
runtime, so a camera that talks only to runtime A shows as seen on runtime B's dashboard and admin list.

The same surface as the embedded :class:`~cryospy.functions.devices.health.DeviceHealth` (get, record,
forget, flush), held to the same tests (tests/unit/test_shared_contacts.py). What differs is where a report
goes:

* **Writes are throttled.** A busy camera talks to the API many times a second (slots, confirms, live
  parts); a write per request would cost a database round trip each. A report is written at once when it
  carries a heartbeat (they are rare and the admin waits for them: settings sync, chain check) or when this
  runtime has not written that device for ``write_every_s``; otherwise it is kept in memory and written by
  the next request (of any device) after the interval, or at :meth:`flush`. A reader on another runtime so
  sees a last-seen at most ``write_every_s`` (plus the gap to the next request) old.
* **Reads are cached.** Every device request reads its device's health (the registry lays it over the
  record), so reads come from a copy of the table refreshed at most every ``read_every_s`` (one query for
  every device), with this runtime's own newer reports laid over it.
* **Two runtimes writing one device** merge in a transaction holding the row: the later last-seen and the
  later heartbeat win, so a delayed write never moves a camera's last contact backwards.

What the table shows (docs/postgres.md, "What the database's operator sees"): a keyed hash of the device
id (the registry key's pseudonym, as ``registry_devices``) and, sealed (AES-256-GCM, the device hash bound
in), the last-seen time and the heartbeat (settings ETag, last sealed sequence, agent details).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables
from cryospy.functions.index.postgres import Sealer

from .health import apply_report

log = logging.getLogger(__name__)
Entry = dict[str, Any]
SCHEMA = """
CREATE TABLE IF NOT EXISTS device_health (
    device bytea PRIMARY KEY,
    doc bytea NOT NULL
);
"""


def newest(a: Entry | None, b: Entry | None) -> Entry | None:
    """Two reports of one device merged: the later last-seen, the later heartbeat (stamps are ISO 8601 UTC of
    one format, so they order as text)."""
    if a is None or b is None:
        return dict(a or b) if (a or b) is not None else None
    beats = [h for h in (a.get("heartbeat"), b.get("heartbeat")) if h]
    return {"last_seen": max((s for s in (a.get("last_seen"), b.get("last_seen")) if s), default=None),
            "heartbeat": max(beats, key=lambda h: str(h.get("received_at") or "")) if beats else None}


class PostgresDeviceHealth:
    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes], write_every_s: float = 5.0,
                 read_every_s: float = 2.0, monotonic: Callable[[], float] = time.monotonic):
        """``pool`` is closed by :meth:`close`; ``key`` the registry key's getter (infra/stores.py)."""
        self._pool = pool
        self._sealer = Sealer(key)
        self.write_every_s = write_every_s
        self.read_every_s = read_every_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._local: dict[str, Entry] = {}           # this runtime's newest report per device, written or not
        self._pending: set[str] = set()              # ... of which these are not written yet
        self._written_at: dict[str, float] = {}
        self._shared: dict[bytes, Entry] = {}        # the table as last read
        self._read_at = float("-inf")
        self.writes = 0                              # database writes made (the throttle's effect, for tests)
        create_tables(pool, "device_health", SCHEMA)

    def _device(self, device_id: str) -> bytes:
        return self._sealer.pseudonym("device", device_id)

    def get(self, device_id: str) -> Entry | None:
        self._write_due()
        if self._monotonic() - self._read_at >= self.read_every_s:
            self._read()
        with self._lock:
            return newest(self._shared.get(self._device(device_id)), self._local.get(device_id))

    def _read(self) -> None:
        try:
            with self._pool.connection() as conn:
                rows = conn.execute("SELECT device, doc FROM device_health").fetchall()
        except psycopg.Error as exc:   # health is advisory: serve what this runtime knows rather than fail
            log.warning("device health unreadable from the database (%s); showing this runtime's own", exc)
            return
        shared = {bytes(d): self._sealer.open(doc, b"health", bytes(d)) for d, doc in rows}
        with self._lock:
            self._shared = shared
            self._read_at = self._monotonic()

    def record(self, device_id: str, seen_at: str, heartbeat: dict[str, Any] | None) -> None:
        with self._lock:
            apply_report(self._local, device_id, seen_at, heartbeat)
            self._pending.add(device_id)
        if heartbeat is not None:
            self._write(device_id)
        else:
            self._write_due()

    def _write_due(self) -> None:
        now = self._monotonic()
        with self._lock:
            due = [d for d in self._pending if now - self._written_at.get(d, float("-inf")) >= self.write_every_s]
        for device_id in due:
            self._write(device_id)

    def _write(self, device_id: str) -> None:
        with self._lock:
            if device_id not in self._pending:
                return
            self._pending.discard(device_id)
            self._written_at[device_id] = self._monotonic()
            mine = dict(self._local[device_id])
        device = self._device(device_id)
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("INSERT INTO device_health (device, doc) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                             (device, self._seal(device, mine)))
                row = conn.execute("SELECT doc FROM device_health WHERE device = %s FOR UPDATE", (device,)).fetchone()
                merged = newest(self._sealer.open(row[0], b"health", device), mine)
                conn.execute("UPDATE device_health SET doc = %s WHERE device = %s",
                             (self._seal(device, merged), device))
                self.writes += 1
        except psycopg.Error as exc:
            log.warning("device health for %r not written to the database (%s); retrying later", device_id, exc)
            with self._lock:
                self._pending.add(device_id)
            return
        with self._lock:
            self._shared[device] = merged or {}

    def _seal(self, device: bytes, entry: Entry | None) -> bytes:
        return self._sealer.seal(entry, b"health", device)

    def forget(self, device_id: str) -> None:
        device = self._device(device_id)
        with self._lock:
            self._local.pop(device_id, None)
            self._pending.discard(device_id)
            self._shared.pop(device, None)
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM device_health WHERE device = %s", (device,))

    def flush(self, wait: bool = True) -> None:
        """Write every report not written yet (at shutdown)."""
        with self._lock:
            pending = list(self._pending)
        for device_id in pending:
            self._write(device_id)

    def close(self) -> None:
        self.flush()
        self._pool.close()
