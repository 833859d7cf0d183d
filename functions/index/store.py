"""The embedded clip index: TinyDB documents sharded by device and UTC day, encrypted at rest.

One implementation of :class:`~cryospy.functions.index.protocol.ClipIndex`, built from visible parts:

* **encryption at rest**: every shard and the totals file go through
  :class:`~cryospy.functions.index.tinydb_files.EncryptedJSONStorage` (AES-256-GCM, file name bound in);
  fragment tables through :class:`~cryospy.functions.index.fragment_log.FragmentLog`;
* **one writer lock**: TinyDB is not safe across threads or processes; the runtime is the only writer, and
  every access here opens a fresh TinyDB under ``lock`` (no stale per-instance caches). Pass the lock in to
  share it; by default the index makes its own;
* **change listeners**: :class:`~cryospy.functions.index.listeners.ChangeListeners`, told after the lock is
  released;
* **running totals**: :class:`~cryospy.functions.index.usage.UsageTotals` (bytes, clips, live counters, the
  retention cursor), crash-safe by its markers and recount.

Why sharded: TinyDB rewrites a whole file on every write, so one shard per device-day bounds each write to
one day of one device, whatever the history. Upserts are keyed by the clip's object key, so replaying an
event changes nothing.
"""

from __future__ import annotations

import bisect
import heapq
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB

from cryospy.common.objectkeys import device_from_hex
from cryospy.functions.api import validate
from cryospy.functions.index import by_day
from cryospy.functions.index.fragment_log import FragmentLog
from cryospy.functions.index.listeners import ChangeListeners, Listener
from cryospy.functions.index.query import ClipPage, ClipQuery, scan_query
from cryospy.functions.index.records import ClipRecord, DeviceUsage, fragments_doc, fragments_from
from cryospy.functions.index.tinydb_files import EncryptedJSONStorage
from cryospy.functions.index.transfer import DayNotEmpty, DeviceTotals, check_import
from cryospy.functions.index.usage import LiveCounters, UsageTotals, dir_name, live_stamp


class TinyDBIndex:
    def __init__(self, root: Path, key: Callable[[], bytes], lock: threading.RLock | None = None,
                 listeners: ChangeListeners | None = None):
        self.root = root
        self._key = key
        self._lock = lock or threading.RLock()
        self._listeners = listeners or ChangeListeners()
        self.fragments = FragmentLog(root, key)
        self._totals = UsageTotals(root, key, self._iter_device)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def _shard(self, device_id: str, day: str) -> TinyDB:
        # Every read and write of a day goes through here (and FragmentLog._path): the one place where a
        # day from a request could become a path, so it is checked here whoever called.
        path = self.root / "clips" / dir_name(device_id) / f"{validate.day(day)}.db"
        return TinyDB(path, storage=EncryptedJSONStorage, key=self._key())

    def close(self) -> None:
        """A clean stop: every write finished, so this process's crash markers go (see usage.py)."""
        with self._lock:
            self._totals.close()

    def set_quarantined(self, device_id: str, nbytes: int) -> None:
        with self._lock:
            self._totals.set_quarantined(device_id, nbytes)

    # -- writes --------------------------------------------------------------------------------------
    def upsert_clip(self, record: ClipRecord) -> bool:
        with self._lock:
            changed = self._upsert_locked(record)
        if changed:
            self._listeners.notify(record.device_id, [record.day])
        return changed

    def _upsert_locked(self, record: ClipRecord) -> bool:
        device, day = record.device_id, record.day
        live: LiveCounters | None = None
        self._totals.mark(device)
        with self._shard(device, day) as db:
            table = db.table("clips", cache_size=0)
            stored = table.get(Query().key == record.key)
            existing = ClipRecord.from_doc(stored) if stored is not None else None
            if existing is not None:
                record = record.changed(live=existing.live)   # the store numbers clips once, on insert
                if record.fragments is None:
                    record = record.changed(fragment_count=existing.fragment_count)
            else:
                record, live = live_stamp(self._totals.live(device), record)
            doc = record.to_doc(with_fragments=False)
            if stored is not None and doc == dict(stored):
                return False
            fragments = record.fragments
            if fragments is not None and (stored is None or "fragments" in stored
                                          or self._fragments(device, day, record.key) != fragments_doc(fragments)):
                self.fragments.append(dir_name(device), day, [(record.key, fragments_doc(fragments))])  # first
            if stored is not None:
                # Replace the whole document in one write (a field turned off must not linger from before).
                table.update(lambda d: (d.clear(), d.update(doc)), doc_ids=[stored.doc_id])  # type: ignore[arg-type]
            else:
                # insert, not TinyDB's upsert(): that would run a matching pass that writes even when nothing
                # matches, then insert (two full rewrites of the shard).
                table.insert(doc)
        before = existing.stored_bytes if existing else 0
        self._totals.add(device, record.stored_bytes - before, 0 if existing else 1, live,
                         unprotected_day=None if record.protected else day)
        return True

    def update_clip(self, device_id: str, day: str, key: str, **changes: Any) -> ClipRecord | None:
        with self._lock:
            current = self.get_clip(device_id, day, key)
            if current is None:
                return None
            updated = current.changed(**changes)
            changed = self._upsert_locked(updated)
        if changed:
            self._listeners.notify(device_id, [day])
        return updated

    def remove_clip(self, device_id: str, day: str, key: str) -> ClipRecord | None:
        with self._lock:
            self._totals.mark(device_id)
            with self._shard(device_id, day) as db:
                table = db.table("clips", cache_size=0)
                stored = table.get(Query().key == key)
                if stored is None:
                    return None
                table.remove(doc_ids=[stored.doc_id])
                emptied = not table.all()
            if emptied:   # a day without clips is no day of the device's any more (and the walk skips it)
                (self.root / "clips" / dir_name(device_id) / f"{day}.db").unlink(missing_ok=True)
                self.fragments.drop(dir_name(device_id), day)
            existing = ClipRecord.from_doc(stored)
            self._totals.add(device_id, -existing.stored_bytes, -1)
        self._listeners.notify(device_id, [day])
        return existing

    def drop_device(self, device_id: str) -> None:
        base = self.root / "clips" / dir_name(device_id)
        with self._lock:
            self._totals.mark(device_id)
            days = self.days(device_id)
            for shard in base.glob("*.db"):
                shard.unlink()
            self.fragments.drop(dir_name(device_id))
            if base.is_dir():
                base.rmdir()
            self._totals.drop(device_id)
        self._listeners.notify(device_id, days)

    # -- transfer (functions/index/transfer.py) ------------------------------------------------------
    def device_totals(self) -> list[DeviceTotals]:
        with self._lock:
            return [DeviceTotals(d, usage, live) for d, usage, live in self._totals.all()]

    def import_day(self, device_id: str, day: str, records: Sequence[ClipRecord]) -> None:
        check_import(device_id, day, records)
        with self._lock:
            self._totals.mark(device_id)
            with self._shard(device_id, day) as db:
                table = db.table("clips", cache_size=0)
                if table.all():
                    raise DayNotEmpty(device_id, day)
                fragments = [(r.key, fragments_doc(r.fragments)) for r in records if r.fragments]
                if fragments:   # first, as on upsert: the records that point there are written after
                    self.fragments.append(dir_name(device_id), day, fragments)
                table.insert_multiple(r.to_doc(with_fragments=False) for r in records)   # one write of the shard
            self._totals.add(device_id, sum(r.stored_bytes for r in records), len(records))
        self._listeners.notify(device_id, [day])

    def import_device(self, totals: DeviceTotals) -> None:
        with self._lock:
            self._totals.mark(totals.device_id)
            self._totals.add(totals.device_id, 0, 0, totals.live)
            self._totals.set_quarantined(totals.device_id, totals.usage.quarantine_bytes)

    def clear(self) -> None:
        with self._lock:
            self._totals.close()
            for folder in ("clips", "fragments", "pending"):
                shutil.rmtree(self.root / folder, ignore_errors=True)
            (self.root / "usage.db").unlink(missing_ok=True)
            self.fragments = FragmentLog(self.root, self._key)
            self._totals = UsageTotals(self.root, self._key, self._iter_device)

    # -- reads ---------------------------------------------------------------------------------------
    def get_clip(self, device_id: str, day: str, key: str) -> ClipRecord | None:
        with self._lock, self._shard(device_id, day) as db:
            doc = db.table("clips", cache_size=0).get(Query().key == key)
        return self._with_fragments(ClipRecord.from_doc(doc)) if doc is not None else None

    def _fragments(self, device_id: str, day: str, key: str) -> list[list[float]] | None:
        return self.fragments.day(dir_name(device_id), day).get(key)

    def _with_fragments(self, record: ClipRecord) -> ClipRecord:
        if record.fragments is None:
            found = self._fragments(record.device_id, record.day, record.key) if record.fragment_count else None
            return record.changed(fragments=fragments_from(found or ()))
        return record

    def has_clip(self, device_id: str, day: str, key: str) -> bool:
        return self.get_clip(device_id, day, key) is not None

    def clips_for_day(self, device_id: str, day: str, with_fragments: bool = False) -> list[ClipRecord]:
        with self._lock, self._shard(device_id, day) as db:
            docs = db.table("clips", cache_size=0).all()
        clips = sorted((ClipRecord.from_doc(d) for d in docs), key=lambda c: c.order)
        if not with_fragments:
            return [c.changed(fragments=None) if c.fragments is not None else c for c in clips]
        table = self.fragments.day(dir_name(device_id), day)
        return [c if c.fragments is not None else c.changed(fragments=fragments_from(table.get(c.key, ())))
                for c in clips]

    def devices(self) -> list[str]:
        base = self.root / "clips"
        if not base.is_dir():
            return []
        return sorted(device_from_hex(p.name) for p in base.iterdir() if p.is_dir())

    def days(self, device_id: str, newest: int | None = None, until: str | None = None) -> list[str]:
        # One directory listing whatever is asked: the shards' names are the days.
        base = self.root / "clips" / dir_name(device_id)
        if not base.is_dir():
            return []
        found = sorted(p.stem for p in base.glob("*.db"))
        if until is not None:
            found = found[:bisect.bisect_right(found, validate.day(until))]
        return found if newest is None else found[max(0, len(found) - newest):] if newest > 0 else []

    def adjacent_days(self, device_id: str, day: str) -> tuple[str | None, str | None]:
        found, day = self.days(device_id), validate.day(day)
        before, after = bisect.bisect_left(found, day), bisect.bisect_right(found, day)
        return found[before - 1] if before else None, found[after] if after < len(found) else None

    def usage(self, device_id: str | None = None) -> DeviceUsage:
        with self._lock:
            return self._totals.usage(device_id)

    def live_clips(self, device_id: str, count: int = 4) -> list[ClipRecord]:
        return by_day.live_clips(self, device_id, count)

    def find_sequence(self, device_id: str, sequence: int, from_day: str, direction: int,
                      max_days: int = 3) -> ClipRecord | None:
        return by_day.find_sequence(self, device_id, sequence, from_day, direction, max_days)

    def query(self, q: ClipQuery) -> ClipPage:
        return scan_query(self, q)

    def oldest_unprotected(self, device_id: str | None = None) -> Iterator[ClipRecord]:
        devices = [device_id] if device_id else self.devices()
        yield from heapq.merge(*(self._walk_unprotected(d) for d in devices), key=lambda c: c.order)

    def _walk_unprotected(self, device_id: str) -> Iterator[ClipRecord]:
        """One shard at a time from the retention cursor (see usage.py); a day found to hold only protected
        clips moves the cursor past it, so it is not read again until a clip there becomes unprotected."""
        with self._lock:
            start = self._totals.cursor(device_id)
        for day in self.days(device_id):
            if day < start:
                continue
            clips = [c for c in self.clips_for_day(device_id, day) if not c.protected]
            if clips:
                yield from clips
            else:
                self._advance_cursor(device_id, day)

    def _advance_cursor(self, device_id: str, day: str) -> None:
        with self._lock:
            # Checked again under the lock: a clip indexed there since the walk read the day keeps the cursor.
            if all(c.protected for c in self.clips_for_day(device_id, day)):
                self._totals.advance_cursor(device_id, (date.fromisoformat(day) + timedelta(days=1)).isoformat())

    def _iter_device(self, device_id: str) -> Iterator[ClipRecord]:
        for day in self.days(device_id):
            yield from self.clips_for_day(device_id, day)
