"""Running totals beside the TinyDB index: per-device stored bytes and clips, live-stream counters, the
quarantine figure and the retention cursor, so that quota checks and retention never scan the history.

They live in ``usage.db``, one row per device, updated in the same locked step as the shard write they
follow. Those are two files, so a crash between them would leave the totals wrong for good; instead, before
its first write to a device this process leaves a marker (``pending/<device>``) that only a clean
:meth:`UsageTotals.close` removes. Totals that find markers recount those devices from their shards before
anything reads or writes a total (once, after a crash, for the devices that were being written).

The retention cursor (``unprotected_from``) is a day before which the device has no unprotected clip: the
oldest-first walk that retention does starts there instead of at the first day of the history, so a long
run of protected evidence is read once, not on every new clip. It is only ever a lower bound: indexing or
unprotecting a clip moves it back to that clip's day in the same step, and a recount after a crash drops it
(the walk then starts at the oldest day again, which is always right).

The caller (the index) holds its writer lock around every method here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB

from cryospy.common.atomic import fsync_dir
from cryospy.common.objectkeys import device_from_hex, device_hex
from cryospy.functions.index.records import ClipRecord, DeviceUsage
from cryospy.functions.index.tinydb_files import EncryptedJSONStorage


def dir_name(device_id: str) -> str:
    """A device's name on disk: device ids may contain spaces and '+'; hex keeps names portable."""
    return device_hex(device_id)


@dataclass(frozen=True)
class LiveCounters:
    """Segments and clips the device's live stream has numbered so far, and the newest capture time in it."""
    segments: int = 0
    clips: int = 0
    last: str = ""


def live_stamp(now: LiveCounters, record: ClipRecord) -> tuple[ClipRecord, LiveCounters | None]:
    """Number a new clip into its device's live stream, whose counters are ``now``: ``live`` = the segments and
    clips recorded before it, which is what a sliding HLS playlist needs for stable sequence numbers
    (functions/clips/hls.py explains why they cannot be derived from the newest clips alone). Only a playable
    clip newer than every numbered one joins: a live playlist cannot insert into its past. Returns the clip
    and the device's counters after it (None: it does not join). Every index store numbers this way."""
    if not record.fragment_count or record.captured_at <= now.last:
        return record.changed(live=None), None
    after = LiveCounters(now.segments + record.fragment_count, now.clips + 1, record.captured_at)
    return record.changed(live=(now.segments, now.clips)), after


class UsageTotals:
    def __init__(self, root: Path, key: Callable[[], bytes], history: Callable[[str], Iterable[ClipRecord]]):
        """``history(device_id)`` yields a device's clips from its shards (the truth a recount starts from)."""
        self.root = root
        self._key = key
        self._history = history
        self._marked: set[str] = set()    # devices this process has written (their marker is on disk)
        pending = root / "pending"
        self._to_recount = {device_from_hex(p.name) for p in pending.iterdir()} if pending.is_dir() else set()

    def _db(self) -> TinyDB:
        if self._to_recount:
            self.recount_pending()
        return TinyDB(self.root / "usage.db", storage=EncryptedJSONStorage, key=self._key())

    @staticmethod
    def _row(table: Any, device_id: str) -> dict[str, Any]:
        return dict(table.get(Query().device_id == device_id) or {"device_id": device_id, "bytes": 0, "clips": 0})

    @staticmethod
    def _put(table: Any, row: dict[str, Any]) -> None:
        """Replace the device's row (TinyDB's upsert merges, which would keep a field this row dropped)."""
        found = table.get(Query().device_id == row["device_id"])
        if found is None:
            table.insert(row)
        else:
            table.update(lambda doc: (doc.clear(), doc.update(row)), doc_ids=[found.doc_id])

    # -- crash recovery ------------------------------------------------------------------------------
    def mark(self, device_id: str) -> None:
        """Before the first write of a device's shard and totals: leave a durable marker (see the module doc).
        Recounts first, so a recount and the write that follows never overlap."""
        if self._to_recount:
            self.recount_pending()
        if device_id in self._marked:
            return
        folder = self.root / "pending"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(folder / dir_name(device_id), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(folder)
        self._marked.add(device_id)

    def recount_pending(self) -> None:
        """Set the marked devices' totals from their shards (the truth), then drop their markers."""
        devices = sorted(self._to_recount)
        with TinyDB(self.root / "usage.db", storage=EncryptedJSONStorage, key=self._key()) as db:
            table = db.table("usage", cache_size=0)
            for device_id in devices:
                row = self._row(table, device_id)
                clips = list(self._history(device_id))
                row.update(bytes=sum(c.stored_bytes for c in clips), clips=len(clips))
                row.pop("unprotected_from", None)   # the walk starts at the oldest day again
                numbered = [c for c in clips if c.live]
                if numbered:
                    last = max(numbered, key=lambda c: c.captured_at)
                    assert last.live is not None
                    row["live_segments"] = max(int(row.get("live_segments", 0)), last.live[0] + last.fragment_count)
                    row["live_clips"] = max(int(row.get("live_clips", 0)), last.live[1] + 1)
                    row["live_last"] = max(row.get("live_last", ""), last.captured_at)
                self._put(table, row)
        self._to_recount.difference_update(devices)
        for device_id in devices:
            if device_id not in self._marked:
                (self.root / "pending" / dir_name(device_id)).unlink(missing_ok=True)

    def close(self) -> None:
        """A clean stop: every write finished, so the markers of this process go."""
        for device_id in self._marked:
            (self.root / "pending" / dir_name(device_id)).unlink(missing_ok=True)
        self._marked.clear()

    # -- writes --------------------------------------------------------------------------------------
    def add(self, device_id: str, delta_bytes: int, delta_clips: int, live: LiveCounters | None = None,
            unprotected_day: str | None = None) -> None:
        """Apply a clip's change; ``unprotected_day``: the day of a clip that is now unprotected (the
        retention cursor moves back to it)."""
        with self._db() as db:
            table = db.table("usage", cache_size=0)
            row = self._row(table, device_id)
            row.update(bytes=max(0, row["bytes"] + delta_bytes), clips=max(0, row["clips"] + delta_clips))
            if live is not None:
                row["live_segments"], row["live_clips"], row["live_last"] = live.segments, live.clips, live.last
            if unprotected_day is not None and unprotected_day < row.get("unprotected_from", unprotected_day):
                row["unprotected_from"] = unprotected_day
            self._put(table, row)

    def set_quarantined(self, device_id: str, nbytes: int) -> None:
        with self._db() as db:
            table = db.table("usage", cache_size=0)
            row = self._row(table, device_id)
            row["quarantine_bytes"] = int(nbytes)
            self._put(table, row)

    def advance_cursor(self, device_id: str, day: str) -> None:
        """Retention found no unprotected clip before ``day``; never moves the cursor back."""
        with self._db() as db:
            table = db.table("usage", cache_size=0)
            row = self._row(table, device_id)
            if day > row.get("unprotected_from", ""):
                row["unprotected_from"] = day
                self._put(table, row)

    def drop(self, device_id: str) -> None:
        with self._db() as db:
            db.table("usage", cache_size=0).remove(Query().device_id == device_id)

    # -- reads ---------------------------------------------------------------------------------------
    def _rows(self) -> list[dict[str, Any]]:
        with self._db() as db:
            return [dict(r) for r in db.table("usage", cache_size=0).all()]

    def all(self) -> list[tuple[str, DeviceUsage, LiveCounters]]:
        """Every device's totals and live counters, by device id (what a migration copies)."""
        return sorted((r["device_id"], DeviceUsage(int(r["bytes"]), int(r["clips"]), int(r.get("quarantine_bytes", 0))),
                       _live(r)) for r in self._rows())

    def usage(self, device_id: str | None = None) -> DeviceUsage:
        total = DeviceUsage()
        for r in self._rows():
            if device_id is None or r["device_id"] == device_id:
                total += DeviceUsage(int(r["bytes"]), int(r["clips"]), int(r.get("quarantine_bytes", 0)))
        return total

    def live(self, device_id: str) -> LiveCounters:
        return _live(next((r for r in self._rows() if r["device_id"] == device_id), {}))

    def cursor(self, device_id: str) -> str:
        """The day retention's walk starts at ("" = the oldest day)."""
        return next((r.get("unprotected_from", "") for r in self._rows() if r["device_id"] == device_id), "")


def _live(row: dict[str, Any]) -> LiveCounters:
    return LiveCounters(int(row.get("live_segments", 0)), int(row.get("live_clips", 0)), row.get("live_last", ""))
