"""The device auth-failure defence in PostgreSQL (``database_url``): one failure window for the deployment, so
an attacker spreading guesses over N runtimes gets the budget once, not N times, and the admin gets one
alert mail, not one per runtime.

The rules are :mod:`~cryospy.functions.devices.auth_defence`'s, unchanged, and the same tests hold both
stores to them (tests/unit/test_auth_defence.py): failures count per known device and per source address
(IPv6 per /64); a right secret always gets in, even from a throttled address, so an attacker's failures
never lock a camera out (the API asks :meth:`is_blocked` only after a failed secret, and a failure from a
blocked address is refused without being recorded, so the table stays bounded per address); failures never
disable a device; a success lowers no count.

Decisions are made in one transaction per failure. A failure against a known device first locks that
device's row in ``auth_devices``, so failures of one device are counted one at a time across runtimes (each
sees an exact count) and of many concurrent failures exactly one claims the alert. Times are the database's
clock.

What the tables show (docs/postgres.md, "What the database's operator sees"):

* ``auth_failures``: when each failure happened (in the clear: the window is a range query), a keyed hash of
  its source address and, for a known device, of the device id (the registry key's pseudonyms), and, sealed,
  the address itself (for the admin's status page);
* ``auth_devices``: the device hash and, sealed, its id, when its last alert was claimed and its last success.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables
from cryospy.functions.index.postgres import Sealer

from .auth_defence import (
    MAX_KEY_CHARS,
    SNAPSHOT_MAX_IPS,
    AuthDefenceSettings,
    FailureDecision,
    address_key,
    stamp_or_none,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_failures (
    at double precision NOT NULL,
    source bytea NOT NULL,
    device bytea,
    address bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_failures_at ON auth_failures (at);
CREATE INDEX IF NOT EXISTS auth_failures_source ON auth_failures (source, at);
CREATE INDEX IF NOT EXISTS auth_failures_device ON auth_failures (device, at) WHERE device IS NOT NULL;
CREATE TABLE IF NOT EXISTS auth_devices (
    device bytea PRIMARY KEY,
    doc bytea
);
"""
Doc = dict[str, Any]


class PostgresAuthDefence:
    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes], settings: AuthDefenceSettings,
                 clock: Callable[[], float] | None = None) -> None:
        """``pool`` is closed by :meth:`close`; ``key`` the registry key's getter (infra/stores.py); ``clock``
        seconds since the epoch, the database's by default."""
        self._pool = pool
        self._sealer = Sealer(key)
        self.settings = settings
        self._clock = clock
        self._window = settings.time_window_minutes * 60.0
        self._interval = settings.min_interval_minutes * 60.0
        create_tables(pool, "auth_failures", SCHEMA)

    def _now(self, conn: psycopg.Connection) -> float:
        if self._clock is not None:
            return self._clock()
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        return float(row[0]) if row else time.time()

    def _source(self, key: str) -> bytes:
        return self._sealer.pseudonym("source", key)

    def _device(self, device_id: str) -> bytes:
        return self._sealer.pseudonym("device", device_id)

    def _change_device(self, conn: psycopg.Connection, device_id: str, fn: Callable[[Doc], Doc | None]) -> None:
        """Lock the device's row (made if missing), and write ``fn(doc)`` unless it returns None."""
        device = self._device(device_id)
        conn.execute("INSERT INTO auth_devices (device) VALUES (%s) ON CONFLICT DO NOTHING", (device,))
        row = conn.execute("SELECT doc FROM auth_devices WHERE device = %s FOR UPDATE", (device,)).fetchone()
        doc = self._sealer.open(row[0], b"auth", device) if row and row[0] is not None else {"device_id": device_id}
        changed = fn(doc)
        if changed is not None:
            conn.execute("UPDATE auth_devices SET doc = %s WHERE device = %s",
                         (self._sealer.seal(changed, b"auth", device), device))

    # -- the defence (auth_defence.AuthDefence's surface) ---------------------------------------------------
    def is_blocked(self, ip: str) -> bool:
        """True while the address has ``unknown_id_limit_per_ip`` or more failures in the window (asked only
        after a failed secret: a right one always gets in)."""
        with self._pool.connection() as conn:
            cutoff = self._now(conn) - self._window
            row = conn.execute("SELECT count(*) FROM auth_failures WHERE source = %s AND at > %s",
                               (self._source(address_key(ip)), cutoff)).fetchone()
        return bool(row and row[0] >= self.settings.unknown_id_limit_per_ip)

    def record_failure(self, device_id: str | None, ip: str, *, known_device: bool) -> FailureDecision:
        s = self.settings
        key = address_key(ip)
        source = self._source(key)
        device_id = device_id[:MAX_KEY_CHARS] if known_device and device_id else None
        device_failures, notify = 0, False
        with self._pool.connection() as conn, conn.transaction():
            now = self._now(conn)
            cutoff = now - self._window
            conn.execute("DELETE FROM auth_failures WHERE at <= %s", (cutoff,))
            if device_id is None:
                conn.execute("INSERT INTO auth_failures (at, source, device, address) VALUES (%s, %s, NULL, %s)",
                             (now, source, self._sealer.seal(key, b"address", source)))
            else:
                device = self._device(device_id)

                def claim(doc: Doc) -> Doc | None:
                    nonlocal device_failures, notify
                    # Under the device's row lock: failures of this device are counted one at a time.
                    conn.execute("INSERT INTO auth_failures (at, source, device, address) VALUES (%s, %s, %s, %s)",
                                 (now, source, device, self._sealer.seal(key, b"address", source)))
                    row = conn.execute("SELECT count(*) FROM auth_failures WHERE device = %s AND at > %s",
                                       (device, cutoff)).fetchone()
                    device_failures = int(row[0]) if row else 0
                    notified = doc.get("notified")
                    if s.notification_threshold and device_failures >= s.notification_threshold \
                            and (notified is None or now - float(notified) >= self._interval):
                        notify = True
                        return {**doc, "notified": now}
                    return None
                self._change_device(conn, device_id, claim)
            row = conn.execute("SELECT count(*) FROM auth_failures WHERE source = %s AND at > %s",
                               (source, cutoff)).fetchone()
            ip_failures = int(row[0]) if row else 0
        return FailureDecision(device_failures=device_failures, ip_failures=ip_failures, notify=notify,
                               block_ip=ip_failures >= s.unknown_id_limit_per_ip)

    def record_success(self, device_id: str, ip: str) -> None:
        """Note a successful login for the status page; deliberately lowers no count."""
        with self._pool.connection() as conn, conn.transaction():
            now = self._now(conn)
            self._change_device(conn, device_id[:MAX_KEY_CHARS],
                                lambda doc: {**doc, "success_at": now, "success_ip": address_key(ip)})

    def release_notification(self, device_id: str) -> None:
        """Give back a ``notify`` claim whose mail could not be sent, so the next failure alerts again."""
        with self._pool.connection() as conn, conn.transaction():
            self._change_device(conn, device_id, lambda doc: {**doc, "notified": None})

    def clear_device(self, device_id: str) -> None:
        """Start the device afresh; its failures keep counting against their source addresses."""
        device = self._device(device_id)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("UPDATE auth_failures SET device = NULL WHERE device = %s", (device,))
            conn.execute("DELETE FROM auth_devices WHERE device = %s", (device,))

    def snapshot(self) -> dict[str, Any]:
        """The current window for the admin status page, as :meth:`AuthDefence.snapshot` gives it."""
        limit = self.settings.unknown_id_limit_per_ip
        with self._pool.connection() as conn:
            now = self._now(conn)
            cutoff = now - self._window
            devices = conn.execute(
                "SELECT d.device, d.doc, COALESCE(f.n, 0), f.last FROM auth_devices d LEFT JOIN "
                "(SELECT device, count(*) AS n, max(at) AS last FROM auth_failures WHERE device IS NOT NULL "
                " AND at > %s GROUP BY device) f ON f.device = d.device", (cutoff,)).fetchall()
            ips = conn.execute(
                "SELECT source, count(*), max(at), (array_agg(address))[1] FROM auth_failures WHERE at > %s "
                "GROUP BY source ORDER BY count(*) DESC LIMIT %s", (cutoff, SNAPSHOT_MAX_IPS)).fetchall()
            blocked = conn.execute("SELECT count(*) FROM (SELECT source FROM auth_failures WHERE at > %s "
                                   "GROUP BY source HAVING count(*) >= %s) b", (cutoff, limit)).fetchone()
        listed = []
        for device, blob, n, last in devices:
            doc = self._sealer.open(blob, b"auth", bytes(device)) if blob is not None else {}
            if doc:
                listed.append({"device_id": doc["device_id"], "failures": int(n),
                               "last_failure_at": stamp_or_none(last),
                               "last_notified_at": stamp_or_none(doc.get("notified")),
                               "last_success_at": stamp_or_none(doc.get("success_at")),
                               "last_success_ip": doc.get("success_ip")})
        listed.sort(key=lambda d: (-d["failures"], d["device_id"]))
        shown = [{"ip": str(self._sealer.open(address, b"address", bytes(source))), "failures": int(n),
                  "last_failure_at": stamp_or_none(last), "blocked": n >= limit} for source, n, last, address in ips]
        shown.sort(key=lambda d: (-d["failures"], d["ip"]))
        return {"as_of": stamp_or_none(now), "settings": asdict(self.settings), "devices": listed, "ips": shown,
                "blocked_ip_count": int(blocked[0]) if blocked else 0}

    def close(self) -> None:
        self._pool.close()
