"""The live state shared by every runtime on one PostgreSQL (``database_url``): who is watching which camera,
and each camera's newest parts, so that a browser on runtime B can watch a camera whose agent pushes its parts
to runtime A, and A's agent long-poll hears of B's viewer.

Same surface and rules as the in-memory :class:`~.hub.LiveHub` (one contract, tests/unit/test_live_hubs.py);
what differs is where the state is. Two tables, nothing in them the MinIO operator does not already see:

``live_cameras`` — one row per camera that was watched or sent a part

* ``device``: a keyed hash of the camera's id (the registry key's pseudonym, as ``registry_devices``);
* ``viewed_at``: when a live page last asked (status or playlist), by the database's clock, so runtimes whose
  clocks differ agree on "watched" (asked within ``grace_s``);
* ``numbering``: sealed, the camera's running numbers (next media sequence, discontinuities, the init segment
  and decode time the next part must continue). Parts are numbered in one transaction that locks this row, so
  a camera's sequence numbers are the deployment's, whichever runtime its parts reach.

``live_parts`` — the sliding window of each camera's newest parts (``window`` rows at most per camera; older
rows are deleted in the transaction that adds a part, and so are any camera's parts whose objects the live
sweep has deleted by now, :data:`~.parts.PART_LIFETIME_S` after they were received; a removed camera's rows go
with it)

* ``device``, ``seq`` (the media sequence number, which the part's position in the playlist shows anyway),
  ``key`` (a keyed hash of the part's object key), ``received`` (the database's clock; parts older than
  ``fresh_s`` are not offered);
* ``part``: sealed, the part's facts (capture time, duration, sizes and offsets, codec, its clip's init part):
  per-clip metadata, so never in the clear. The bytes stay sealed objects in MinIO.

Both are sealed under :func:`~cryospy.infra.stores.registry_key` (cameras push parts while the runtime is locked
too; the database does not have the key).

Wake-ups cross runtimes by ``LISTEN``/``NOTIFY`` on ``cryospy_live``: a page that starts watching a camera
(its ask finds it unwatched) notifies, and every runtime's listener wakes its held agent long-polls, which
read the state again. A notification lost while a listener reconnects costs at most :data:`RECHECK_S`: a held
poll reads the state at least that often. There is no playlist long-poll (a player reloads the playlist), so
a new part needs no wake-up: the next reload on any runtime reads it from ``live_parts``.

The limit on held polls (``max_waiters``, the server's ``live_waiters``) is per runtime, as each poll holds one
of that runtime's request threads.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables, listen, standalone
from cryospy.common.timefmt import parse_utc, utc_stamp
from cryospy.functions.index.postgres import Sealer

from .hub import LivePart, Numbering, ParsedPart, number_part
from .parts import PART_LIFETIME_S

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS live_cameras (
    device bytea PRIMARY KEY,
    viewed_at timestamptz,
    numbering bytea
);
CREATE TABLE IF NOT EXISTS live_parts (
    device bytea NOT NULL,
    seq bigint NOT NULL,
    key bytea NOT NULL,
    received timestamptz NOT NULL,
    part bytea NOT NULL,
    PRIMARY KEY (device, seq),
    UNIQUE (device, key)
);
"""
CHANNEL = "cryospy_live"
RECHECK_S = 5.0      # a held poll reads the state at least this often, whatever it heard


class PostgresLiveHub:
    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes], *, grace_s: float = 10.0, window: int = 6,
                 fresh_s: float = 20.0, max_waiters: int = 4, recheck_s: float = RECHECK_S) -> None:
        """``pool`` is closed by :meth:`close` (one connection listens); ``key``: the registry key's getter;
        ``recheck_s``: how often a held poll reads the state if it hears nothing."""
        self._pool = pool
        self._sealer = Sealer(key)
        self.grace_s, self.window, self.fresh_s, self.max_waiters = grace_s, window, fresh_s, max_waiters
        self.recheck_s = recheck_s
        self._waiters = 0
        self._heard = 0           # bumped by every wake-up; a poll waits only if nothing came since it read
        self._closing = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._me = uuid.uuid4().hex
        create_tables(pool, "live", SCHEMA)
        self._listener = threading.Thread(target=self._listen, name="cryospy-live-listen", daemon=True)
        self._listener.start()

    def _device(self, device_id: str) -> bytes:
        return self._sealer.pseudonym("device", device_id)

    # -- viewers ------------------------------------------------------------------------------------------
    def viewer_seen(self, device_id: str) -> None:
        """Note the ask (one statement) and, if it starts the watching, wake every runtime's held polls."""
        device = self._device(device_id)
        with standalone(self._pool) as conn:
            row = conn.execute(
                "WITH old AS (SELECT viewed_at FROM live_cameras WHERE device = %(d)s), "
                "up AS (INSERT INTO live_cameras (device, viewed_at) VALUES (%(d)s, clock_timestamp()) "
                "ON CONFLICT (device) DO UPDATE SET viewed_at = EXCLUDED.viewed_at) "
                "SELECT coalesce((SELECT viewed_at >= clock_timestamp() - make_interval(secs => %(g)s) FROM old), "
                "false)", {"d": device, "g": self.grace_s}).fetchone()
            if row is not None and not row[0]:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._me}:{device.hex()}"))
        self._wake()

    def watched(self, device_id: str) -> bool:
        return self._viewers(self._device(device_id))[0]

    def _viewers(self, device: bytes) -> tuple[bool, float]:
        """Whether the camera is watched, and for how many more seconds without another ask."""
        with standalone(self._pool) as conn:
            row = conn.execute("SELECT extract(epoch FROM viewed_at + make_interval(secs => %s) - clock_timestamp()) "
                               "FROM live_cameras WHERE device = %s", (self.grace_s, device)).fetchone()
        left = float(row[0]) if row is not None and row[0] is not None else float("-inf")
        return left >= 0, left

    def wait_for_change(self, device_id: str, known: bool, timeout_s: float) -> tuple[bool, bool]:
        """As :meth:`.hub.LiveHub.wait_for_change`: at most ``max_waiters`` polls wait in this runtime at once,
        the others are answered at once. The state is read from the database on every wake-up, never while
        holding the lock the listener needs to wake the poll."""
        device = self._device(device_id)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            busy = self._waiters >= self.max_waiters
            if not busy:
                self._waiters += 1
        if busy:
            return self._viewers(device)[0], False
        try:
            while True:
                with self._cond:
                    heard, closing = self._heard, self._closing
                state, left = self._viewers(device)
                now = time.monotonic()
                if state != known or now >= deadline or closing:
                    return state, True
                wait = min(deadline - now, self.recheck_s)
                if state:       # wake when the grace period after the last ask runs out
                    wait = min(wait, left + 0.01)
                with self._cond:
                    if self._heard == heard and not self._closing:
                        self._cond.wait(max(wait, 0.01))
        finally:
            with self._cond:
                self._waiters -= 1

    def release_waiters(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def _wake(self) -> None:
        with self._cond:
            self._heard += 1
            self._cond.notify_all()

    def _listen(self) -> None:
        listen(self._pool, CHANNEL, self._stop, self._hear, "the live view's notifications")

    def _hear(self, conn: psycopg.Connection[Any]) -> None:
        self._wake()    # anything sent while this connection was not listening: read the state again
        while not self._stop.is_set():
            for note in conn.notifies(timeout=0.5):
                if not note.payload.startswith(self._me + ":"):
                    self._wake()

    # -- parts --------------------------------------------------------------------------------------------
    def add_part(self, device_id: str, part: ParsedPart) -> LivePart:
        """Number ``part`` after the camera's last one, whichever runtime that reached: one transaction, which
        locks the camera's row, adds the part and drops those that slid out of the window."""
        device = self._device(device_id)
        key = self._sealer.pseudonym("live part", part.key)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO live_cameras (device) VALUES (%s) ON CONFLICT DO NOTHING", (device,))
            row = conn.execute("SELECT numbering, extract(epoch FROM clock_timestamp()) FROM live_cameras "
                               "WHERE device = %s FOR UPDATE", (device,)).fetchone()
            assert row is not None
            again = conn.execute("SELECT seq, extract(epoch FROM received), part FROM live_parts "
                                 "WHERE device = %s AND key = %s", (device, key)).fetchone()
            if again is not None:      # reported twice: the first numbering stands
                return self._open_part(device, again)
            numbering = self._open_numbering(device, row[0])
            live, numbering = number_part(numbering, part, float(row[1]))
            conn.execute("INSERT INTO live_parts (device, seq, key, received, part) "
                         "VALUES (%s, %s, %s, to_timestamp(%s), %s)",
                         (device, live.media_sequence, key, live.received, self._seal_part(device, live)))
            conn.execute("UPDATE live_cameras SET numbering = %s WHERE device = %s",
                         (self._seal_numbering(device, numbering), device))
            conn.execute("DELETE FROM live_parts WHERE device = %s AND seq <= %s",
                         (device, live.media_sequence - self.window))
            # Other cameras' parts whose objects are gone: skip rows another runtime's transaction holds (no
            # waiting, no deadlock; a later part prunes them).
            conn.execute("DELETE FROM live_parts WHERE ctid IN (SELECT ctid FROM live_parts WHERE received < "
                         "clock_timestamp() - make_interval(secs => %s) FOR UPDATE SKIP LOCKED)",
                         (PART_LIFETIME_S,))
        return live

    def parts(self, device_id: str) -> list[LivePart]:
        """The camera's newest parts that are still fresh (by the database's clock), oldest first."""
        device = self._device(device_id)
        with standalone(self._pool) as conn:
            rows = conn.execute("SELECT seq, extract(epoch FROM received), part FROM live_parts WHERE device = %s "
                                "AND received >= clock_timestamp() - make_interval(secs => %s) ORDER BY seq",
                                (device, self.fresh_s)).fetchall()
        return [self._open_part(device, row) for row in rows]

    def _window(self, device_id: str) -> list[LivePart]:
        device = self._device(device_id)
        with standalone(self._pool) as conn:
            rows = conn.execute("SELECT seq, extract(epoch FROM received), part FROM live_parts WHERE device = %s "
                                "ORDER BY seq", (device,)).fetchall()
        return [self._open_part(device, row) for row in rows]

    def part(self, device_id: str, key: str) -> LivePart | None:
        return next((p for p in self._window(device_id) if p.key == key), None)

    def init_holder(self, device_id: str, map_key: str) -> LivePart | None:
        return next((p for p in reversed(self._window(device_id)) if p.map_key == map_key), None)

    def forget(self, device_id: str) -> None:
        device = self._device(device_id)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM live_parts WHERE device = %s", (device,))
            conn.execute("DELETE FROM live_cameras WHERE device = %s", (device,))
        self._wake()

    def close(self) -> None:
        self.release_waiters()
        self._stop.set()
        self._listener.join(5)
        self._pool.close()

    # -- sealing ------------------------------------------------------------------------------------------
    def _seal_part(self, device: bytes, p: LivePart) -> bytes:
        doc = {"key": p.key, "discontinuity": p.discontinuity, "captured_at": utc_stamp(p.captured_at),
               "duration_s": p.duration_s, "init_size": p.init_size, "fragment_offset": p.fragment_offset,
               "fragment_size": p.fragment_size, "sealed_size": p.sealed_size, "codec": p.codec,
               "map_key": p.map_key}
        return self._sealer.seal(doc, b"live part", device, str(p.media_sequence).encode())

    def _open_part(self, device: bytes, row: Any) -> LivePart:
        seq, received, blob = int(row[0]), float(row[1]), row[2]
        d = self._sealer.open(blob, b"live part", device, str(seq).encode())
        return LivePart(d["key"], seq, int(d["discontinuity"]), parse_utc(d["captured_at"]), float(d["duration_s"]),
                        int(d["init_size"]), int(d["fragment_offset"]), int(d["fragment_size"]),
                        int(d["sealed_size"]), str(d["codec"]), str(d["map_key"]), received)

    def _seal_numbering(self, device: bytes, n: Numbering) -> bytes:
        doc = {"next": n.next_sequence, "discontinuities": n.discontinuities, "init": n.last_init.hex(),
               "expected_start": n.expected_start, "map_key": n.map_key}
        return self._sealer.seal(doc, b"live numbering", device)

    def _open_numbering(self, device: bytes, blob: bytes | None) -> Numbering:
        if blob is None:
            return Numbering()
        d = self._sealer.open(blob, b"live numbering", device)
        start = d["expected_start"]
        return Numbering(int(d["next"]), int(d["discontinuities"]), bytes.fromhex(d["init"]),
                         float(start) if start is not None else None, str(d["map_key"]))
