"""The clip index in PostgreSQL, for deployments that outgrow one machine (``database_url``, docs/postgres.md).

One implementation of :class:`~cryospy.functions.index.protocol.ClipIndex`, held to the same conformance suite
as the embedded :class:`~cryospy.functions.index.store.TinyDBIndex`. What it stores, column by column, and so
what the database's operator can see (the bar: no more than the MinIO operator already sees):

``index_clips`` — one row per clip

* ``device``: a keyed hash (HMAC-SHA-256 under a key derived from the index key, 16 bytes) of the device id, so
  no camera name. A pseudonym, as the storage token in the object key is; it is a different one, but the
  operator of both can pair them up by time, which tells nothing new.
* ``key``: a keyed hash of the object key (legacy keys name the camera).
* ``day`` and ``captured_at``: the UTC day and the capture time to the millisecond, the order keys every reader
  sorts by. The MinIO operator reads both in every object key (``cryospy/common/objectkeys.py``).
* ``stored_bytes``: sealed clip plus sealed thumbnail, as MinIO's object sizes show.
* ``protected``: whether the clip is kept as evidence, in clear so that retention's oldest-unprotected walk is
  one index range (``index_clips_unprotected``), whatever the history. This is the one thing the MinIO
  operator does not read directly; over time they infer it anyway (protected clips are the ones retention
  leaves behind).
* ``record``, ``fragments``: the whole :class:`ClipRecord` document and its fragment table, each sealed with
  AES-256-GCM under the index key, with the table, device hash, day and key hash bound in as associated data
  (a row's blob cannot be moved to another row). Motion, codec, hashes, agent details, thumbnails' keys, live
  numbering, chain verdicts: all only in there.

``index_devices`` — one row per device: its hash, its id sealed, the running totals ``bytes``, ``clips`` and
``quarantine_bytes`` in clear (sums of sizes MinIO shows), and its live-stream counters sealed.

Running totals change in the same transaction as the clip row, so they are right after any crash without a
recount. Writes to one device serialise on its ``index_devices`` row (``SELECT … FOR UPDATE``), which is what
the live numbering needs, across threads and across runtimes; different devices write in parallel.

Listeners hear this process's changes after commit. Changes made by other processes sharing the database
arrive by ``LISTEN``/``NOTIFY`` (channel ``cryospy_index``, payload: a writer id, the device hash and the day),
heard by a thread that starts with the first listener; a notification sent while no runtime listens is not
replayed (a dashboard that was down rebuilds at start).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables, listen, standalone
from cryospy.common.timefmt import utc_stamp
from cryospy.functions.api import validate
from cryospy.functions.index import by_day
from cryospy.functions.index.listeners import ChangeListeners, Listener
from cryospy.functions.index.query import ClipPage, ClipQuery, page_cursor
from cryospy.functions.index.records import ClipRecord, DeviceUsage, fragments_doc, fragments_from
from cryospy.functions.index.tinydb_files import IndexCorrupt
from cryospy.functions.index.transfer import DayNotEmpty, DeviceTotals, check_import
from cryospy.functions.index.usage import LiveCounters, live_stamp

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS index_devices (
    device bytea PRIMARY KEY,
    name bytea NOT NULL,
    bytes bigint NOT NULL DEFAULT 0,
    clips bigint NOT NULL DEFAULT 0,
    quarantine_bytes bigint NOT NULL DEFAULT 0,
    live bytea
);
CREATE TABLE IF NOT EXISTS index_clips (
    device bytea NOT NULL,
    day text NOT NULL,
    key bytea NOT NULL,
    captured_at text NOT NULL,
    protected boolean NOT NULL,
    stored_bytes bigint NOT NULL,
    record bytea NOT NULL,
    fragments bytea,
    PRIMARY KEY (device, day, key)
);
CREATE INDEX IF NOT EXISTS index_clips_time ON index_clips (captured_at);
CREATE INDEX IF NOT EXISTS index_clips_device_time ON index_clips (device, captured_at);
CREATE INDEX IF NOT EXISTS index_clips_unprotected ON index_clips (device, captured_at) WHERE NOT protected;
"""
CHANNEL = "cryospy_index"
_VERSION = b"\x01"
_BATCH = 64
_COLUMNS = "device, day, key, captured_at, record"
_ROW = "device, day, key, captured_at, protected, stored_bytes, record, fragments"   # what _values gives
_INSERT = f"INSERT INTO index_clips ({_ROW}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"


class Sealer:
    """A key's two uses in a table: keyed hashes (pseudonyms for ids and keys) and sealing row blobs. The index
    uses the index key; the device registry and the alert limits their own (infra/stores.py)."""

    def __init__(self, key: Callable[[], bytes]):
        self._key = key

    def _keys(self) -> tuple[bytes, AESGCM]:
        key = self._key()
        return hmac.new(key, b"cryospy index pseudonyms v1", hashlib.sha256).digest(), AESGCM(key)

    def pseudonym(self, kind: str, value: str) -> bytes:
        return hmac.new(self._keys()[0], f"{kind}\0{value}".encode(), hashlib.sha256).digest()[:16]

    def seal(self, doc: Any, *aad: bytes) -> bytes:
        nonce = os.urandom(12)
        plain = json.dumps(doc, separators=(",", ":")).encode()
        return _VERSION + nonce + self._keys()[1].encrypt(nonce, plain, b"|".join(aad))

    def open(self, blob: bytes, *aad: bytes) -> Any:
        blob = bytes(blob)
        try:
            if blob[:1] != _VERSION:
                raise InvalidTag
            return json.loads(self._keys()[1].decrypt(blob[1:13], blob[13:], b"|".join(aad)))
        except (InvalidTag, ValueError):
            raise IndexCorrupt("a sealed database row failed authentication (wrong key, or the row was edited "
                               "or moved in the database); restore the database from a backup") from None


@dataclass(frozen=True)
class _Row:
    device: bytes
    day: str
    key: bytes


class PostgresIndex:
    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes], listeners: ChangeListeners | None = None):
        """``pool``: connections to the database (closed by :meth:`close`); ``key``: the index key's getter
        (raises while the vault is locked, as every read and write needs it)."""
        self._pool = pool
        self._sealer = Sealer(key)
        self._listeners = listeners or ChangeListeners()
        self._writer_id = uuid.uuid4().hex[:16]
        self._listen_thread: threading.Thread | None = None
        self._stop = threading.Event()
        create_tables(pool, "index", SCHEMA)

    # -- sealing -------------------------------------------------------------------------------------
    def _device(self, device_id: str) -> bytes:
        return self._sealer.pseudonym("device", device_id)

    def _row(self, device_id: str, day: str, key: str) -> _Row:
        return _Row(self._device(device_id), validate.day(day), self._sealer.pseudonym("key", key))

    def _open_record(self, device: bytes, day: str, key: bytes, blob: bytes) -> ClipRecord:
        return ClipRecord.from_doc(self._sealer.open(blob, b"clip", device, day.encode(), key))

    def _open_fragments(self, row: _Row, blob: bytes | None) -> tuple[Any, ...]:
        if blob is None:
            return ()
        return fragments_from(self._sealer.open(blob, b"fragments", row.device, row.day.encode(), row.key))

    # -- writes --------------------------------------------------------------------------------------
    def upsert_clip(self, record: ClipRecord) -> bool:
        with self._pool.connection() as conn, conn.transaction():
            live = self._lock_device(conn, record.device_id)
            changed = self._upsert_in(conn, record, live)
        if changed:
            self._listeners.notify(record.device_id, [record.day])
        return changed

    def update_clip(self, device_id: str, day: str, key: str, **changes: Any) -> ClipRecord | None:
        row = self._row(device_id, day, key)
        with self._pool.connection() as conn, conn.transaction():
            live = self._lock_device(conn, device_id)
            current = self._get_in(conn, row)
            if current is None:
                return None
            updated = current.changed(**changes)
            changed = self._upsert_in(conn, updated, live)
        if changed:
            self._listeners.notify(device_id, [day])
        return updated

    def _lock_device(self, conn: psycopg.Connection[Any], device_id: str) -> LiveCounters:
        """Make sure the device has its row, lock it until commit, and read its live counters."""
        device = self._device(device_id)
        conn.execute("INSERT INTO index_devices (device, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (device, self._sealer.seal(device_id, b"device", device)))
        sealed = conn.execute("SELECT live FROM index_devices WHERE device = %s FOR UPDATE", (device,)).fetchone()
        if sealed is None or sealed[0] is None:
            return LiveCounters()
        segments, clips, last = self._sealer.open(sealed[0], b"live", device)
        return LiveCounters(segments, clips, last)

    def _upsert_in(self, conn: psycopg.Connection[Any], record: ClipRecord, live: LiveCounters) -> bool:
        row = self._row(record.device_id, record.day, record.key)
        found = conn.execute("SELECT record, fragments FROM index_clips WHERE device = %s AND day = %s AND key = %s",
                             (row.device, row.day, row.key)).fetchone()
        existing = self._open_record(row.device, row.day, row.key, found[0]) if found else None
        stored_fragments = self._open_fragments(row, found[1]) if found else ()
        after: LiveCounters | None = None
        if existing is not None:
            record = record.changed(live=existing.live)   # the store numbers clips once, on insert
            if record.fragments is None:
                record = record.changed(fragments=stored_fragments)
        else:
            record, after = live_stamp(live, record)
        fragments = record.fragments if record.fragments is not None else ()
        doc = record.to_doc(with_fragments=False)
        if existing is not None and doc == existing.to_doc(with_fragments=False) and fragments == stored_fragments:
            return False
        conn.execute(
            f"{_INSERT} ON CONFLICT (device, day, key) DO UPDATE SET "
            "captured_at = EXCLUDED.captured_at, protected = EXCLUDED.protected, "
            "stored_bytes = EXCLUDED.stored_bytes, record = EXCLUDED.record, fragments = EXCLUDED.fragments",
            self._values(row, record, doc, fragments))
        before = existing.stored_bytes if existing else 0
        self._add_totals(conn, row.device, record.stored_bytes - before, 0 if existing else 1, after)
        self._announce(conn, row.device, row.day)
        return True

    def _values(self, row: _Row, record: ClipRecord, doc: dict[str, Any], fragments: Sequence[Any]) -> tuple[Any, ...]:
        """The ``index_clips`` row of a record: its clear columns and its sealed document and fragments."""
        sealed_doc = self._sealer.seal(doc, b"clip", row.device, row.day.encode(), row.key)
        sealed_fragments = (self._sealer.seal(fragments_doc(fragments), b"fragments", row.device, row.day.encode(),
                                              row.key) if fragments else None)
        return (row.device, row.day, row.key, record.captured_at, record.protected, record.stored_bytes, sealed_doc,
                sealed_fragments)

    def _add_totals(self, conn: psycopg.Connection[Any], device: bytes, delta_bytes: int, delta_clips: int,
                    live: LiveCounters | None = None) -> None:
        sealed_live = (self._sealer.seal([live.segments, live.clips, live.last], b"live", device)
                       if live is not None else None)
        conn.execute("UPDATE index_devices SET bytes = GREATEST(0, bytes + %s), clips = GREATEST(0, clips + %s), "
                     "live = COALESCE(%s, live) WHERE device = %s", (delta_bytes, delta_clips, sealed_live, device))

    def _announce(self, conn: psycopg.Connection[Any], device: bytes, day: str) -> None:
        """Tell other processes (delivered at commit, and only if it commits)."""
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._writer_id}:{device.hex()}:{day}"))

    def remove_clip(self, device_id: str, day: str, key: str) -> ClipRecord | None:
        row = self._row(device_id, day, key)
        with self._pool.connection() as conn, conn.transaction():
            self._lock_device(conn, device_id)
            gone = conn.execute("DELETE FROM index_clips WHERE device = %s AND day = %s AND key = %s RETURNING record",
                                (row.device, row.day, row.key)).fetchone()
            if gone is None:
                return None
            existing = self._open_record(row.device, row.day, row.key, gone[0])
            self._add_totals(conn, row.device, -existing.stored_bytes, -1)
            self._announce(conn, row.device, row.day)
        self._listeners.notify(device_id, [day])
        return existing

    def drop_device(self, device_id: str) -> None:
        device = self._device(device_id)
        days = self.days(device_id)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT 1 FROM index_devices WHERE device = %s FOR UPDATE", (device,))
            conn.execute("DELETE FROM index_clips WHERE device = %s", (device,))
            conn.execute("DELETE FROM index_devices WHERE device = %s", (device,))
            for day in days:
                self._announce(conn, device, day)
        self._listeners.notify(device_id, days)

    def set_quarantined(self, device_id: str, nbytes: int) -> None:
        device = self._device(device_id)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO index_devices (device, name, quarantine_bytes) VALUES (%s, %s, %s) "
                         "ON CONFLICT (device) DO UPDATE SET quarantine_bytes = EXCLUDED.quarantine_bytes",
                         (device, self._sealer.seal(device_id, b"device", device), int(nbytes)))

    # -- transfer (functions/index/transfer.py) ------------------------------------------------------
    def device_totals(self) -> list[DeviceTotals]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT device, name, bytes, clips, quarantine_bytes, live FROM index_devices"
                                ).fetchall()
        found = []
        for device, name, nbytes, clips, quarantined, live in rows:
            device = bytes(device)
            counters = LiveCounters(*self._sealer.open(live, b"live", device)) if live is not None else LiveCounters()
            found.append(DeviceTotals(self._sealer.open(name, b"device", device),
                                      DeviceUsage(int(nbytes), int(clips), int(quarantined)), counters))
        return sorted(found, key=lambda t: t.device_id)

    def import_day(self, device_id: str, day: str, records: Sequence[ClipRecord]) -> None:
        """One transaction: all of the day's clips or none, written by ``COPY`` (a migration, and the 1 M clip
        benchmark's loader, write a whole history through here)."""
        check_import(device_id, day, records)
        with self._pool.connection() as conn, conn.transaction():
            self._lock_device(conn, device_id)
            device = self._device(device_id)
            if conn.execute("SELECT 1 FROM index_clips WHERE device = %s AND day = %s LIMIT 1",
                            (device, validate.day(day))).fetchone():
                raise DayNotEmpty(device_id, day)
            values = [self._values(self._row(device_id, day, r.key), r, r.to_doc(with_fragments=False),
                                   r.fragments or ()) for r in records]
            with conn.cursor() as cur, cur.copy(f"COPY index_clips ({_ROW}) FROM STDIN") as copy:
                for value in values:
                    copy.write_row(value)
            self._add_totals(conn, device, sum(r.stored_bytes for r in records), len(records))
            self._announce(conn, device, validate.day(day))
        self._listeners.notify(device_id, [day])

    def import_device(self, totals: DeviceTotals) -> None:
        device = self._device(totals.device_id)
        with self._pool.connection() as conn, conn.transaction():
            self._lock_device(conn, totals.device_id)
            self._add_totals(conn, device, 0, 0, totals.live)
            conn.execute("UPDATE index_devices SET quarantine_bytes = %s WHERE device = %s",
                         (totals.usage.quarantine_bytes, device))

    def clear(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM index_clips")
            conn.execute("DELETE FROM index_devices")

    # -- reads ---------------------------------------------------------------------------------------
    def _get_in(self, conn: psycopg.Connection[Any], row: _Row) -> ClipRecord | None:
        found = conn.execute("SELECT record, fragments FROM index_clips WHERE device = %s AND day = %s AND key = %s",
                             (row.device, row.day, row.key)).fetchone()
        if found is None:
            return None
        record = self._open_record(row.device, row.day, row.key, found[0])
        return record.changed(fragments=self._open_fragments(row, found[1]))

    def get_clip(self, device_id: str, day: str, key: str) -> ClipRecord | None:
        with standalone(self._pool) as conn:
            return self._get_in(conn, self._row(device_id, day, key))

    def has_clip(self, device_id: str, day: str, key: str) -> bool:
        row = self._row(device_id, day, key)
        with standalone(self._pool) as conn:
            return conn.execute("SELECT 1 FROM index_clips WHERE device = %s AND day = %s AND key = %s",
                                (row.device, row.day, row.key)).fetchone() is not None

    def clips_for_day(self, device_id: str, day: str, with_fragments: bool = False) -> list[ClipRecord]:
        device, day = self._device(device_id), validate.day(day)
        columns = "key, record, fragments" if with_fragments else "key, record, NULL"
        with standalone(self._pool) as conn:
            rows = conn.execute(f"SELECT {columns} FROM index_clips WHERE device = %s AND day = %s",
                                (device, day)).fetchall()
        clips = []
        for key, blob, fragments in rows:
            record = self._open_record(device, day, key, blob)
            if with_fragments:
                record = record.changed(fragments=self._open_fragments(_Row(device, day, key), fragments))
            clips.append(record)
        return sorted(clips, key=lambda c: c.order)

    def devices(self) -> list[str]:
        with standalone(self._pool) as conn:
            # One probe per device (LATERAL … LIMIT 1), never a semi-join over every clip, which the planner
            # may choose for EXISTS; the overview asks after every clip.
            rows = conn.execute("SELECT d.device, d.name FROM index_devices d CROSS JOIN LATERAL "
                                "(SELECT 1 FROM index_clips c WHERE c.device = d.device LIMIT 1) AS has").fetchall()
        return sorted(self._sealer.open(name, b"device", device) for device, name in rows)

    def days(self, device_id: str, newest: int | None = None, until: str | None = None) -> list[str]:
        # A loose index scan: one index probe per day, not a read of every clip of the device. Bounded ones
        # walk down from the newest day and stop after ``newest`` probes.
        params: dict[str, Any] = {"d": self._device(device_id)}
        if newest is None and until is None:
            sql = ("WITH RECURSIVE d(day) AS ("
                   " SELECT min(day) FROM index_clips WHERE device = %(d)s"
                   " UNION ALL SELECT (SELECT min(day) FROM index_clips WHERE device = %(d)s AND day > d.day)"
                   " FROM d WHERE d.day IS NOT NULL) SELECT day FROM d WHERE day IS NOT NULL")
        else:
            if newest is not None and newest < 1:
                return []
            upto = " AND day <= %(u)s" if until is not None else ""
            more = " AND d.n < %(n)s" if newest is not None else ""
            params.update(u=validate.day(until) if until is not None else None, n=newest)
            sql = ("WITH RECURSIVE d(day, n) AS ("
                   f" SELECT (SELECT max(day) FROM index_clips WHERE device = %(d)s{upto}), 1"
                   " UNION ALL SELECT (SELECT max(day) FROM index_clips WHERE device = %(d)s AND day < d.day), d.n + 1"
                   f" FROM d WHERE d.day IS NOT NULL{more}) SELECT day FROM d WHERE day IS NOT NULL ORDER BY day")
        with standalone(self._pool) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [r[0] for r in rows]

    def adjacent_days(self, device_id: str, day: str) -> tuple[str | None, str | None]:
        with standalone(self._pool) as conn:
            row = conn.execute(
                "SELECT (SELECT max(day) FROM index_clips WHERE device = %(d)s AND day < %(day)s),"
                " (SELECT min(day) FROM index_clips WHERE device = %(d)s AND day > %(day)s)",
                {"d": self._device(device_id), "day": validate.day(day)}).fetchone()
        assert row is not None
        return row[0], row[1]

    def usage(self, device_id: str | None = None) -> DeviceUsage:
        where, params = ("WHERE device = %s", (self._device(device_id),)) if device_id else ("", ())
        with standalone(self._pool) as conn:
            row = conn.execute("SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(clips), 0), "
                               f"COALESCE(SUM(quarantine_bytes), 0) FROM index_devices {where}", params).fetchone()
        assert row is not None
        return DeviceUsage(int(row[0]), int(row[1]), int(row[2]))

    def live_clips(self, device_id: str, count: int = 4) -> list[ClipRecord]:
        return by_day.live_clips(self, device_id, count)

    def find_sequence(self, device_id: str, sequence: int, from_day: str, direction: int,
                      max_days: int = 3) -> ClipRecord | None:
        return by_day.find_sequence(self, device_id, sequence, from_day, direction, max_days)

    def oldest_unprotected(self, device_id: str | None = None) -> Iterator[ClipRecord]:
        if device_id is not None:
            yield from self._ordered("device = %s AND NOT protected", (self._device(device_id),))
            return
        with standalone(self._pool) as conn:
            devices = [r[0] for r in conn.execute("SELECT device FROM index_devices").fetchall()]
        walks = [self._ordered("device = %s AND NOT protected", (bytes(d),)) for d in devices]
        yield from heapq.merge(*walks, key=lambda c: c.order)

    def _ordered(self, where: str, params: tuple[Any, ...], descending: bool = False) -> Iterator[ClipRecord]:
        """Clips matching ``where`` in capture order (``order``: time, then object key), read lazily in
        batches by the capture-time index. The object key is sealed, so clips with the same capture time are
        read together and sorted here."""
        step, sign = ("DESC", "<") if descending else ("ASC", ">")
        edge: str | None = None
        while True:
            after = f" AND captured_at {sign} %s" if edge is not None else ""
            with standalone(self._pool) as conn:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM index_clips WHERE {where}{after} "
                                    f"ORDER BY captured_at {step} LIMIT {_BATCH}",
                                    (*params, *((edge,) if edge is not None else ()))).fetchall()
                if not rows:
                    return
                edge = rows[-1][3]
                rows = [r for r in rows if r[3] != edge] + conn.execute(
                    f"SELECT {_COLUMNS} FROM index_clips WHERE {where} AND captured_at = %s", (*params, edge)
                ).fetchall()
            records = [self._open_record(bytes(d), day, bytes(k), blob) for d, day, k, _, blob in rows]
            yield from sorted(records, key=lambda c: c.order, reverse=descending)

    def query(self, q: ClipQuery) -> ClipPage:
        """By the capture-time indexes; motion is sealed, so a motion filter reads (and counts) in Python."""
        conditions, params = ["TRUE"], []
        if q.device_id:
            conditions.append("device = %s")
            params.append(self._device(q.device_id))
        if q.start:
            conditions.append("captured_at >= %s")
            params.append(utc_stamp(q.start))
        if q.end:
            conditions.append("captured_at <= %s")
            params.append(utc_stamp(q.end))
        where = " AND ".join(conditions)
        cursor_where = where + (" AND captured_at <= %s" if q.cursor else "")
        cursor_params = (*params, q.cursor[0]) if q.cursor else tuple(params)

        def keep(c: ClipRecord) -> bool:
            return (q.motion is None or c.motion == q.motion) and (q.cursor is None or c.order < q.cursor)

        stream = (c for c in self._ordered(cursor_where, cursor_params, descending=True) if keep(c))
        found = list(islice(stream, q.limit + 1))
        if q.motion is not None:
            matched = len(found) + sum(1 for _ in stream)
        else:   # without a time range every clip matches: the running totals count them
            total = self.usage(q.device_id).clips if q.start is None and q.end is None else None
            matched = self._count(where, tuple(params), q.cursor, keep, total)
        page = found[:q.limit]
        return ClipPage(page, page_cursor(page[-1]) if len(found) > q.limit else None, matched)

    def _count(self, where: str, params: tuple[Any, ...], cursor: tuple[str, str] | None,
               keep: Callable[[ClipRecord], bool], total: int | None = None) -> int:
        """How many clips match from the cursor on. ``total``, when known, is how many match with no cursor
        (the running totals, for a query without a time range): then only the clips newer than the cursor are
        counted, so a page reads as many rows as the pages before it, not the whole history."""
        if cursor is None and total is not None:
            return total
        if cursor is None:
            with standalone(self._pool) as conn:
                row = conn.execute(f"SELECT count(*) FROM index_clips WHERE {where}", params).fetchone()
            return int(row[0]) if row else 0
        side = ">" if total is not None else "<"
        with standalone(self._pool) as conn:
            row = conn.execute(f"SELECT count(*) FROM index_clips WHERE {where} AND captured_at {side} %s",
                               (*params, cursor[0])).fetchone()
            ties = conn.execute(f"SELECT {_COLUMNS} FROM index_clips WHERE {where} AND captured_at = %s",
                                (*params, cursor[0])).fetchall()
        counted = int(row[0]) if row else 0
        kept = sum(1 for d, day, k, _, blob in ties if keep(self._open_record(bytes(d), day, bytes(k), blob)))
        return total - counted - (len(ties) - kept) if total is not None else counted + kept

    # -- listeners and lifecycle ---------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self._listeners.add(listener)
        if self._listen_thread is None:
            self._listen_thread = threading.Thread(target=self._listen, name="cryospy-index-listen", daemon=True)
            self._listen_thread.start()

    def _listen(self) -> None:
        """Hear other processes' changes and tell this one's listeners (the dashboard re-renders the day)."""
        listen(self._pool, CHANNEL, self._stop, self._hear, "the database's change notifications")

    def _hear(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            for note in conn.notifies(timeout=0.5):
                self._heard(note.payload)

    def _heard(self, payload: str) -> None:
        writer, _, rest = payload.partition(":")
        device_hex, _, day = rest.partition(":")
        if writer == self._writer_id or not day:
            return
        with standalone(self._pool) as conn:
            row = conn.execute("SELECT name FROM index_devices WHERE device = %s", (bytes.fromhex(device_hex),)
                               ).fetchone()
        if row is not None:
            self._listeners.notify(self._sealer.open(row[0], b"device", bytes.fromhex(device_hex)), [day])

    def close(self) -> None:
        """Stop hearing other processes and close the pool. Every write was one transaction: nothing to
        finish and nothing to recount after a stop that was not clean."""
        self._stop.set()
        if self._listen_thread is not None:
            self._listen_thread.join(5)
        self._pool.close()

