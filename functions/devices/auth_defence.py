"""Auth-failure defence: count failed device logins per device and per source address, and decide when to
alert the admin or throttle an address.

The original meant to do this but recorded a failure only when the verifier returned a client, which it
never did on failure, so nothing was ever counted; its window also lived in memory and vanished on
restart. Here every failure is recorded in SQLite (WAL, one connection behind a lock), so the window and
the alert rate limit survive a restart and concurrent requests see exact counts. With ``database_url`` the
window is in PostgreSQL instead (pg_auth_defence.py, the same rules), shared by every runtime.

What is counted, and why:

* **Per device id, only for devices that exist** (enabled or disabled). Counting arbitrary ids would let
  anyone fill the store with invented names; unknown ids are still counted against their source address.
* **Per source address, always.** IPv6 addresses are grouped by their /64, because a single host usually
  owns a whole /64 and could otherwise rotate addresses to escape the limit.
* **Successes reset nothing.** An attacker holding one device's secret could otherwise interleave valid
  logins to wash away a brute force against another device (or the same one). A success is only noted
  for the status page.

**Failures never disable a device.** Device secrets are 256-bit, so failed guesses cannot succeed and
disabling protects nothing; it only handed anyone who knew a camera's name (ids are names like "porch") a
switch to turn it off. The reaction is on the *source*: its address is throttled, and the admin is mailed
with the address. Only an admin disables a device. The former ``auto_disable_threshold`` setting is refused
with a message saying so.

How the API uses it (a right secret always gets in, even from a throttled address, so no attacker can lock
a camera out by failing from its address or its /64; failures from a throttled address are refused without
being recorded, so the store stays bounded per address)::

    ... verify the secret; on failure:
    if defence.is_blocked(ip):
        raise TooManyRequests
    decision = defence.record_failure(device_id, ip, known_device=registry.exists(device_id))
    if decision.notify: send the alert (on failure: defence.release_notification(device_id))

Decisions are claims made inside the write transaction, so of many concurrent failures exactly one sees
``notify``. After an admin re-enables a device or rotates its secret, call :meth:`AuthDefence.clear_device` so the old
failures no longer count against it.

Errors::

    FunctionsError
    └── AuthDefenceError              the store cannot be opened or written (path and fix in the message)
        └── AuthDefenceSettingsError  auth_defence settings are invalid (key, bound and fix in the message)
"""

from __future__ import annotations

import ipaddress
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryospy.common.strict_keys import message_only, over_defaults
from cryospy.common.timefmt import utc_stamp_seconds
from cryospy.functions.errors import FunctionsError

STORE_FORMAT = "1"
IPV6_GROUP_PREFIX = 64
SNAPSHOT_MAX_IPS = 50
MAX_KEY_CHARS = 128

# key: (minimum, maximum); every number has bounds so a typo such as 0 or 10000000 is caught at start-up.
_BOUNDS: dict[str, tuple[int, int]] = {
    "time_window_minutes": (1, 7 * 24 * 60),
    "notification_threshold": (0, 100_000),
    "min_interval_minutes": (0, 7 * 24 * 60),
    # At least 1: without a per-address limit unknown ids would be unlimited and the failure log unbounded.
    "unknown_id_limit_per_ip": (1, 1_000_000),
}


SUSPECTS_REFRESH_SECONDS = 5.0

# Settings that no longer exist, and what to write instead: refused with this message, never silently ignored.
_REMOVED = {
    "auto_disable_threshold": "failed logins no longer disable a device: anyone who knew a camera's name could "
                              "switch it off that way. The source address is throttled instead "
                              "(unknown_id_limit_per_ip) and the admin is mailed (notification_threshold); "
                              "only an admin disables a device. Remove the key",
}


class AuthDefenceError(FunctionsError):
    """The failure store cannot be used; the message names the file and what to check."""


class AuthDefenceSettingsError(AuthDefenceError):
    """The ``auth_defence`` settings are invalid; the message names the key, the bound and the fix."""


@dataclass(frozen=True)
class AuthDefenceSettings:
    """Thresholds of the defence; a threshold of 0 turns that reaction off.

    Defaults follow the original's example configuration (60 min, mail at 5, 30 min apart) plus a per-address
    limit of 20 failures per window (``unknown_id_limit_per_ip``: every failure from an address counts, for
    known and unknown ids alike).
    """

    time_window_minutes: int = 60
    notification_threshold: int = 5
    min_interval_minutes: int = 30
    unknown_id_limit_per_ip: int = 20

    def __post_init__(self) -> None:
        for name, (low, high) in _BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise AuthDefenceSettingsError(f"auth_defence.{name} must be a whole number, not {value!r}")
            if not low <= value <= high:
                off = " (0 turns it off)" if low == 0 else ""
                raise AuthDefenceSettingsError(f"auth_defence.{name} is {value}; it must be in {low}..{high}{off}")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> AuthDefenceSettings:
        """Strict: unknown keys are an error with a hint, so a typo never silently keeps a default."""
        for key, why in _REMOVED.items():
            if isinstance(doc, Mapping) and key in doc:
                raise AuthDefenceSettingsError(f"auth_defence.{key} was removed: {why}")
        return cls(**over_defaults(doc, {}, known=[f.name for f in fields(cls)], what="auth_defence",
                                   error=message_only(AuthDefenceSettingsError)))


@dataclass(frozen=True)
class FailureDecision:
    """What the caller must do after one failed login.

    ``device_failures`` is 0 for unknown ids. ``block_ip`` means the address is now refused (so
    :meth:`AuthDefence.is_blocked` returns True) until enough of its failures leave the window.
    """

    device_failures: int
    ip_failures: int
    notify: bool
    block_ip: bool


def address_key(ip: str) -> str:
    """The key an address is counted under: IPv4 as is, IPv6 as its /64, anything else truncated as is.

    A value that is not an IP (a unix-socket peer, a test client) is still counted, so a broken proxy
    setup degrades to one shared bucket rather than to no limit at all.
    """
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip[:MAX_KEY_CHARS] or "?"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        bare = ipaddress.IPv6Address(int(address))  # drops any zone id
        return str(ipaddress.IPv6Network((bare, IPV6_GROUP_PREFIX), strict=False))
    return str(address)


def stamp_or_none(ts: float | None) -> str | None:
    if ts is None:
        return None
    return utc_stamp_seconds(datetime.fromtimestamp(ts, UTC))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failures (ts REAL NOT NULL, ip TEXT NOT NULL, device_id TEXT);
CREATE INDEX IF NOT EXISTS failures_ts ON failures (ts);
CREATE INDEX IF NOT EXISTS failures_ip ON failures (ip, ts);
CREATE INDEX IF NOT EXISTS failures_device ON failures (device_id, ts) WHERE device_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    last_notified_at REAL,
    last_success_at REAL,
    last_success_ip TEXT
);
"""


class FailureDefence(Protocol):
    """What the device API asks of the defence: this SQLite store, or the one in PostgreSQL that every runtime
    of a deployment shares (pg_auth_defence.py)."""

    settings: AuthDefenceSettings

    def is_blocked(self, ip: str) -> bool: ...

    def record_failure(self, device_id: str | None, ip: str, *, known_device: bool) -> FailureDecision: ...

    def clear_device(self, device_id: str) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class AuthDefence:
    """The persistent failure window and the decisions taken from it; safe to share between threads."""

    def __init__(self, path: Path, settings: AuthDefenceSettings, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.settings = settings
        self._clock = clock
        self._window = settings.time_window_minutes * 60.0
        self._interval = settings.min_interval_minutes * 60.0
        self._lock = threading.Lock()
        self._suspect_set: frozenset[str] = frozenset()
        self._recent_suspects: dict[str, float] = {}
        self._suspects_read_at = float("-inf")
        try:
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise AuthDefenceError(f"cannot open the auth-failure store {self.path} ({exc}); check that the "
                                   "directory exists and is writable by the runtime") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._write() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)", (STORE_FORMAT,))
                found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0]
        except (sqlite3.Error, AuthDefenceError) as exc:
            self._db.close()
            raise AuthDefenceError(f"the auth-failure store {self.path} is not usable ({exc}); check the disk, "
                                   "or move the file aside to start with an empty window") from exc
        if found != STORE_FORMAT:
            self._db.close()
            raise AuthDefenceError(f"the auth-failure store {self.path} has format {found!r}, this version "
                                   f"reads {STORE_FORMAT!r}; move the file aside (only recent failures are lost)")

    # -- plumbing ---------------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the lock: the lock orders threads, IMMEDIATE orders processes."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise AuthDefenceError(f"cannot write the auth-failure store {self.path} ({exc}); check the "
                                       "disk and that no other process holds it locked") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise AuthDefenceError(f"cannot write the auth-failure store {self.path} ({exc}); check "
                                           "the disk (space, permissions)") from exc
                raise

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise AuthDefenceError(f"cannot read the auth-failure store {self.path} ({exc}); check the "
                                       "disk") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AuthDefence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the defence ------------------------------------------------------------------------------------

    def is_blocked(self, ip: str) -> bool:
        """True while the address has ``unknown_id_limit_per_ip`` or more failures in the window.

        Ask it about a failed login before recording it, and do not record failures of blocked requests: the
        block then lifts by itself once the address's old failures slide out of the window.
        """
        key = address_key(ip)
        if key not in self._suspects():
            return False   # the common case, answered without the store's lock (it serialised every request)
        cutoff = self._clock() - self._window
        (count,) = self._read("SELECT COUNT(*) FROM failures WHERE ip = ? AND ts > ?", (key, cutoff))[0]
        return bool(count >= self.settings.unknown_id_limit_per_ip)

    def _suspects(self) -> frozenset[str] | set[str]:
        """Addresses with a failure in the window: recorded here at once, and re-read from the store every few
        seconds for failures another process recorded. Only these need the store's count."""
        now = time.monotonic()
        if now - self._suspects_read_at > SUSPECTS_REFRESH_SECONDS:
            self._suspects_read_at = now
            cutoff = self._clock() - self._window
            rows = self._read("SELECT DISTINCT ip FROM failures WHERE ts > ?", (cutoff,))
            self._suspect_set = frozenset(ip for (ip,) in rows)
            # Ones recorded here stay listed until a refresh has surely read them back from the store.
            self._recent_suspects = {k: t for k, t in self._recent_suspects.items()
                                     if now - t < 2 * SUSPECTS_REFRESH_SECONDS}
        recent = self._recent_suspects
        return self._suspect_set | recent.keys() if recent else self._suspect_set

    def record_failure(self, device_id: str | None, ip: str, *, known_device: bool) -> FailureDecision:
        """Record one failed login and say what to do about it.

        ``known_device`` is whether ``device_id`` exists in the registry (enabled or not); only then does
        the failure count against the device. Thresholds compare with ``>=``.

        * ``notify`` is claimed when the device is at or over ``notification_threshold`` and the last
          claim is at least ``min_interval_minutes`` old (persisted, so a restart does not re-alert).
        * ``block_ip`` is True when this failure brings the address to its limit or beyond.
        """
        s = self.settings
        now = self._clock()
        cutoff = now - self._window
        key = address_key(ip)
        self._recent_suspects = {**self._recent_suspects, key: time.monotonic()}
        device = device_id[:MAX_KEY_CHARS] if known_device and device_id else None
        with self._write() as db:
            db.execute("DELETE FROM failures WHERE ts <= ?", (cutoff,))
            db.execute("INSERT INTO failures (ts, ip, device_id) VALUES (?, ?, ?)", (now, key, device))
            (ip_failures,) = db.execute("SELECT COUNT(*) FROM failures WHERE ip = ? AND ts > ?",
                                        (key, cutoff)).fetchone()
            device_failures, notify = 0, False
            if device is not None:
                (device_failures,) = db.execute("SELECT COUNT(*) FROM failures WHERE device_id = ? AND ts > ?",
                                                (device, cutoff)).fetchone()
                db.execute("INSERT OR IGNORE INTO devices (device_id) VALUES (?)", (device,))
                (notified,) = db.execute("SELECT last_notified_at FROM devices WHERE device_id = ?",
                                         (device,)).fetchone()
                if s.notification_threshold and device_failures >= s.notification_threshold \
                        and (notified is None or now - notified >= self._interval):
                    notify = True
                    db.execute("UPDATE devices SET last_notified_at = ? WHERE device_id = ?", (now, device))
        return FailureDecision(device_failures=device_failures, ip_failures=ip_failures, notify=notify,
                               block_ip=ip_failures >= s.unknown_id_limit_per_ip)

    def record_success(self, device_id: str, ip: str) -> None:
        """Note a successful login for the status page; deliberately lowers no count (see module doc)."""
        with self._write() as db:
            db.execute("INSERT INTO devices (device_id, last_success_at, last_success_ip) VALUES (?, ?, ?) "
                       "ON CONFLICT (device_id) DO UPDATE SET last_success_at = excluded.last_success_at, "
                       "last_success_ip = excluded.last_success_ip",
                       (device_id[:MAX_KEY_CHARS], self._clock(), address_key(ip)))

    def release_notification(self, device_id: str) -> None:
        """Give back a ``notify`` claim whose mail could not be sent, so the next failure alerts again."""
        with self._write() as db:
            db.execute("UPDATE devices SET last_notified_at = NULL WHERE device_id = ?", (device_id,))

    def clear_device(self, device_id: str) -> None:
        """Start the device afresh (admin re-enabled it, rotated its secret or deleted it).

        Its failures stop counting against the device and its claims are forgotten; they keep counting
        against their source addresses, so clearing a device never unblocks an attacker.
        """
        with self._write() as db:
            db.execute("UPDATE failures SET device_id = NULL WHERE device_id = ?", (device_id,))
            db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))

    def snapshot(self) -> dict[str, Any]:
        """The current window for the admin status page: devices under attack and the busiest addresses."""
        now = self._clock()
        cutoff = now - self._window
        device_rows = self._read(
            "SELECT d.device_id, COALESCE(f.n, 0), f.last, d.last_notified_at, "
            "       d.last_success_at, d.last_success_ip "
            "FROM devices d LEFT JOIN (SELECT device_id, COUNT(*) AS n, MAX(ts) AS last FROM failures "
            "                          WHERE device_id IS NOT NULL AND ts > ? GROUP BY device_id) f "
            "ON f.device_id = d.device_id ORDER BY COALESCE(f.n, 0) DESC, d.device_id", (cutoff,))
        ip_rows = self._read(
            "SELECT ip, COUNT(*), MAX(ts) FROM failures WHERE ts > ? GROUP BY ip "
            "ORDER BY COUNT(*) DESC, ip LIMIT ?", (cutoff, SNAPSHOT_MAX_IPS))
        (blocked,) = self._read(
            "SELECT COUNT(*) FROM (SELECT ip FROM failures WHERE ts > ? GROUP BY ip HAVING COUNT(*) >= ?)",
            (cutoff, self.settings.unknown_id_limit_per_ip))[0]
        limit = self.settings.unknown_id_limit_per_ip
        return {
            "as_of": stamp_or_none(now),
            "settings": asdict(self.settings),
            "devices": [
                {"device_id": dev, "failures": n, "last_failure_at": stamp_or_none(last),
                 "last_notified_at": stamp_or_none(notified),
                 "last_success_at": stamp_or_none(success), "last_success_ip": success_ip}
                for dev, n, last, notified, success, success_ip in device_rows
            ],
            "ips": [{"ip": ip, "failures": n, "last_failure_at": stamp_or_none(last), "blocked": n >= limit}
                    for ip, n, last in ip_rows],
            "blocked_ip_count": blocked,
        }
