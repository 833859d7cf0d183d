"""The clip index: TinyDB documents sharded by device and UTC day, encrypted at rest.

Why sharded: TinyDB rewrites a whole file on every write, so one shard per device-day bounds each write to
one day of one device, whatever the history. Why one lock: TinyDB is not safe across threads or processes;
the runtime is the only writer, and every access here opens a fresh TinyDB under the store's lock (no stale
per-instance caches). Upserts are keyed by the clip's object key, so replaying an event changes nothing.

Usage totals (stored bytes and clips per device) are kept beside the shards and updated in the same locked
step as each insert or removal, so quota checks never have to scan the history. Those are two files, so a
crash between them would leave the totals wrong for good; instead, before its first write to a device this
process leaves a marker (``pending/<device>``) that only a clean :meth:`IndexStore.close` removes. A store
that finds markers recounts those devices' totals from their shards before it reads or writes any total
(once, after a crash, for the devices that were being written).

Listeners get ``(device_id, day)`` after a change, which is how the dashboard re-renders only what a new clip
touches.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB

from cryospy.functions.api import validate
from cryospy.functions.index.fragment_log import FragmentLog
from cryospy.functions.index.tinydb_files import EncryptedJSONStorage

Listener = Callable[[str, str], None]


def _dir_name(device_id: str) -> str:
    # Device ids may contain spaces and '+'; hex keeps file names portable and unambiguous.
    return device_id.encode().hex()


def playable(record: dict[str, Any]) -> bool:
    """Whether the clip has fragments to play (records indexed before the fragment log carry them inline)."""
    return bool(record.get("fragment_count") or record.get("fragments")) and not record.get("missing")


def stored_bytes(record: dict[str, Any] | None) -> int:
    """What a clip costs in the bucket: the sealed clip plus its sealed thumbnail."""
    if not record:
        return 0
    return int(record.get("sealed_size", 0)) + int(record.get("thumb_size", 0))


class IndexStore:
    def __init__(self, root: Path, key: Callable[[], bytes]):
        self.root = root
        self._key = key
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self.fragments = FragmentLog(root, key)
        self._marked: set[str] = set()    # devices this process has written (their marker is on disk)
        pending = root / "pending"
        self._to_recount = {bytes.fromhex(p.name).decode() for p in pending.iterdir()} if pending.is_dir() else set()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _shard(self, device_id: str, day: str) -> TinyDB:
        # Every read and write of a day goes through here (and FragmentLog._path): the one place where a
        # day from a request could become a path, so it is checked here whoever called.
        path = self.root / "clips" / _dir_name(device_id) / f"{validate.day(day)}.db"
        return TinyDB(path, storage=EncryptedJSONStorage, key=self._key())

    def _usage_db(self) -> TinyDB:
        if self._to_recount:
            self._recount_locked()
        return TinyDB(self.root / "usage.db", storage=EncryptedJSONStorage, key=self._key())

    # -- crash recovery of the usage totals ------------------------------------------------------------
    def _mark(self, device_id: str) -> None:
        """Before the first write of a device's shard and totals: leave a durable marker (see the module doc)."""
        if device_id in self._marked:
            return
        folder = self.root / "pending"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(folder / _dir_name(device_id), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._marked.add(device_id)

    def _recount_locked(self) -> None:
        """Set the marked devices' totals from their shards (the truth), then drop their markers."""
        devices = sorted(self._to_recount)
        with TinyDB(self.root / "usage.db", storage=EncryptedJSONStorage, key=self._key()) as db:
            table = db.table("usage", cache_size=0)
            for device_id in devices:
                row = dict(table.get(Query().device_id == device_id) or {})
                clips = list(self._iter_device(device_id))
                row.update(device_id=device_id, bytes=sum(stored_bytes(c) for c in clips), clips=len(clips))
                numbered = [c for c in clips if c.get("live")]
                if numbered:
                    last = max(numbered, key=lambda c: c["captured_at"])
                    recount = (last["live"][0] + last.get("fragment_count", 0), last["live"][1] + 1)
                    row["live_segments"] = max(int(row.get("live_segments", 0)), recount[0])
                    row["live_clips"] = max(int(row.get("live_clips", 0)), recount[1])
                    row["live_last"] = max(row.get("live_last", ""), last["captured_at"])
                table.upsert(row, Query().device_id == device_id)
        self._to_recount.difference_update(devices)
        for device_id in devices:
            if device_id not in self._marked:
                (self.root / "pending" / _dir_name(device_id)).unlink(missing_ok=True)

    def close(self) -> None:
        """A clean stop: every write finished, so the markers of this process go."""
        with self._lock:
            for device_id in self._marked:
                (self.root / "pending" / _dir_name(device_id)).unlink(missing_ok=True)
            self._marked.clear()

    def _add_usage(self, device_id: str, delta_bytes: int, delta_clips: int,
                   live: tuple[int, int, str] | None = None) -> None:
        with self._usage_db() as db:
            table = db.table("usage", cache_size=0)
            row = dict(table.get(Query().device_id == device_id) or {"bytes": 0, "clips": 0})
            row.update(device_id=device_id, bytes=max(0, row["bytes"] + delta_bytes),
                       clips=max(0, row["clips"] + delta_clips))
            if live is not None:
                row["live_segments"], row["live_clips"], row["live_last"] = live
            table.upsert(row, Query().device_id == device_id)

    def set_quarantined(self, device_id: str, nbytes: int) -> None:
        """What the device's quarantine holds now (functions/clips/quarantine.py counts it from the bucket)."""
        with self._lock, self._usage_db() as db:
            table = db.table("usage", cache_size=0)
            row = dict(table.get(Query().device_id == device_id) or {"bytes": 0, "clips": 0})
            row.update(device_id=device_id, quarantine_bytes=int(nbytes))
            table.upsert(row, Query().device_id == device_id)

    # -- writes --------------------------------------------------------------------------------------
    def upsert_clip(self, record: dict[str, Any]) -> bool:
        """Insert or update by object key; returns True when anything changed."""
        with self._lock:
            changed = self._upsert_locked(record)
        if changed:
            self._notify(record["device_id"], record["day"])   # outside the lock: listeners may read the index
        return changed

    def _upsert_locked(self, record: dict[str, Any]) -> bool:
        device, day = record["device_id"], record["day"]
        live: tuple[int, int, str] | None = None
        record = dict(record)
        fragments = record.pop("fragments", None)
        if fragments is not None:
            record["fragment_count"] = len(fragments)
        if self._to_recount:
            self._recount_locked()      # before the shard changes, so the recount and this delta never overlap
        self._mark(device)
        with self._shard(device, day) as db:
            table = db.table("clips", cache_size=0)
            existing = table.get(Query().key == record["key"])
            if existing is not None and {**existing, **record} == dict(existing):
                return False
            if fragments is not None and (existing is None or self._fragments(device, day, record["key"]) != fragments):
                self.fragments.append(_dir_name(device), day, [(record["key"], fragments)])   # before the record
            # update-by-id or insert: TinyDB's upsert() would run a matching pass that writes even when
            # nothing matches, then insert (two full rewrites of the shard).
            if existing is not None:
                table.update(record, doc_ids=[existing.doc_id])
            else:
                live = self._live_stamp(device, record)
                table.insert(record)
        merged = {**(existing or {}), **record}
        self._add_usage(device, stored_bytes(merged) - stored_bytes(existing), 0 if existing else 1, live)
        return True

    def _live_stamp(self, device_id: str, record: dict[str, Any]) -> tuple[int, int, str] | None:
        """Number a new clip into the device's live stream: ``record["live"] = [segments, clips]`` recorded before
        it, which is what a sliding HLS playlist needs for stable sequence numbers (functions/clips/hls.py explains why
        they cannot be derived from the newest clips alone). Only a clip newer than every numbered one joins: a
        live playlist cannot insert into its past. Returns the device's counters after this clip."""
        if not record.get("fragment_count"):
            return None
        with self._usage_db() as db:
            row = db.table("usage", cache_size=0).get(Query().device_id == device_id) or {}
        if record["captured_at"] <= row.get("live_last", ""):
            return None
        record["live"] = [int(row.get("live_segments", 0)), int(row.get("live_clips", 0))]
        return record["live"][0] + record["fragment_count"], record["live"][1] + 1, record["captured_at"]

    def update_clip(self, device_id: str, day: str, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Change fields of an indexed clip; returns the new record, or None when the clip is not indexed."""
        with self._lock:
            current = self.get_clip(device_id, day, key)
            if current is None:
                return None
            updated = {**current, **changes}
            changed = self._upsert_locked(updated)
        if changed:
            self._notify(device_id, day)
        return updated

    def remove_clip(self, device_id: str, day: str, key: str) -> dict[str, Any] | None:
        """Forget a clip; returns the record it had, or None when it was not indexed."""
        with self._lock:
            if self._to_recount:
                self._recount_locked()
            self._mark(device_id)
            with self._shard(device_id, day) as db:
                table = db.table("clips", cache_size=0)
                existing = table.get(Query().key == key)
                if existing is None:
                    return None
                table.remove(Query().key == key)
                emptied = not table.all()
            if emptied:
                self.fragments.drop(_dir_name(device_id), day)
            self._add_usage(device_id, -stored_bytes(existing), -1)
        self._notify(device_id, day)
        return dict(existing)

    def drop_device(self, device_id: str) -> None:
        """Forget every clip of a device (its objects are already deleted)."""
        base = self.root / "clips" / _dir_name(device_id)
        with self._lock:
            if self._to_recount:
                self._recount_locked()
            self._mark(device_id)
            days = self.days(device_id)
            for shard in base.glob("*.db"):
                shard.unlink()
            self.fragments.drop(_dir_name(device_id))
            if base.is_dir():
                base.rmdir()
            with self._usage_db() as db:
                db.table("usage", cache_size=0).remove(Query().device_id == device_id)
        for day in days:
            self._notify(device_id, day)

    # -- reads ---------------------------------------------------------------------------------------
    def get_clip(self, device_id: str, day: str, key: str) -> dict[str, Any] | None:
        """The clip's record, with its fragments."""
        with self._lock, self._shard(device_id, day) as db:
            doc = db.table("clips", cache_size=0).get(Query().key == key)
        return self._with_fragments(dict(doc)) if doc is not None else None

    def _fragments(self, device_id: str, day: str, key: str) -> list[list[float]] | None:
        return self.fragments.day(_dir_name(device_id), day).get(key)

    def _with_fragments(self, record: dict[str, Any]) -> dict[str, Any]:
        if record.get("fragment_count") and "fragments" not in record:
            record["fragments"] = self._fragments(record["device_id"], record["day"], record["key"]) or []
        return record

    def has_clip(self, device_id: str, day: str, key: str) -> bool:
        return self.get_clip(device_id, day, key) is not None

    def clips_for_day(self, device_id: str, day: str, with_fragments: bool = False) -> list[dict[str, Any]]:
        """The day's clips in capture order; their fragments only when asked (only playback needs them)."""
        with self._lock, self._shard(device_id, day) as db:
            docs = db.table("clips", cache_size=0).all()
        clips = sorted((dict(d) for d in docs), key=lambda d: (d["captured_at"], d["key"]))
        if with_fragments:
            table = self.fragments.day(_dir_name(device_id), day)
            for clip in clips:
                if clip.get("fragment_count") and "fragments" not in clip:
                    clip["fragments"] = table.get(clip["key"], [])
        return clips

    def devices(self) -> list[str]:
        base = self.root / "clips"
        if not base.is_dir():
            return []
        return sorted(bytes.fromhex(p.name).decode() for p in base.iterdir() if p.is_dir())

    def days(self, device_id: str) -> list[str]:
        base = self.root / "clips" / _dir_name(device_id)
        if not base.is_dir():
            return []
        return sorted(p.stem for p in base.glob("*.db"))

    def usage(self, device_id: str | None = None) -> dict[str, int]:
        """Stored bytes and clip count of one device, or of all devices together, and the bytes their
        quarantine holds (not included in ``bytes``)."""
        with self._lock, self._usage_db() as db:
            rows = db.table("usage", cache_size=0).all()
        picked = [r for r in rows if device_id is None or r["device_id"] == device_id]
        return {"bytes": sum(r["bytes"] for r in picked), "clips": sum(r["clips"] for r in picked),
                "quarantine_bytes": sum(r.get("quarantine_bytes", 0) for r in picked)}

    def live_clips(self, device_id: str, count: int = 4) -> list[dict[str, Any]]:
        """The device's newest clips that joined its live stream (see ``_live_stamp``), oldest first."""
        found: list[dict[str, Any]] = []
        for day in reversed(self.days(device_id)[-2:]):
            numbered = [c for c in self.clips_for_day(device_id, day, with_fragments=True) if c.get("live")]
            found = numbered[-count:] + found
            if len(found) >= count:
                break
        return found[-count:]

    def find_sequence(self, device_id: str, sequence: int, from_day: str, direction: int,
                      max_days: int = 3) -> dict[str, Any] | None:
        """The clip with this sequence number in ``from_day`` or up to ``max_days`` shards before it
        (``direction`` -1) or after it (+1): a device's sequence numbers follow its capture time."""
        days = [d for d in self.days(device_id) if (d <= from_day if direction < 0 else d >= from_day)]
        for day in sorted(days, reverse=direction < 0)[:max_days]:
            for clip in self.clips_for_day(device_id, day):
                if clip.get("sequence") == sequence:
                    return clip
        return None

    def oldest_clips(self, device_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Clips oldest first (one device, or all merged by capture time), reading one shard at a time."""
        devices = [device_id] if device_id else self.devices()
        yield from heapq.merge(*(self._iter_device(d) for d in devices),
                               key=lambda c: (c["captured_at"], c["key"]))

    def _iter_device(self, device_id: str) -> Iterator[dict[str, Any]]:
        for day in self.days(device_id):
            yield from self.clips_for_day(device_id, day)

    def _notify(self, device_id: str, day: str) -> None:
        for listener in self._listeners:
            listener(device_id, day)
