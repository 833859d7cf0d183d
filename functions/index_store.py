"""The clip index: TinyDB documents sharded by device and UTC day, encrypted at rest.

Why sharded: TinyDB rewrites a whole file on every write, so one shard per device-day bounds each write to
one day of one device, whatever the history. Why one lock: TinyDB is not safe across threads or processes;
the runtime is the only writer, and every access here opens a fresh TinyDB under the store's lock (no stale
per-instance caches). Upserts are keyed by the clip's object key, so replaying an event changes nothing.

Listeners get ``(device_id, day)`` after a change, which is how the dashboard re-renders only what a new clip
touches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB

from .storage import EncryptedJSONStorage

Listener = Callable[[str, str], None]


def _dir_name(device_id: str) -> str:
    # Device ids may contain spaces and '+'; hex keeps file names portable and unambiguous.
    return device_id.encode().hex()


class IndexStore:
    def __init__(self, root: Path, key: Callable[[], bytes]):
        self.root = root
        self._key = key
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _shard(self, device_id: str, day: str) -> TinyDB:
        path = self.root / "clips" / _dir_name(device_id) / f"{day}.db"
        return TinyDB(path, storage=EncryptedJSONStorage, key=self._key())

    def upsert_clip(self, record: dict[str, Any]) -> bool:
        """Insert or update by object key; returns True when anything changed."""
        device, day = record["device_id"], record["day"]
        with self._lock, self._shard(device, day) as db:
            table = db.table("clips", cache_size=0)
            existing = table.get(Query().key == record["key"])
            if existing is not None and {**existing, **record} == dict(existing):
                return False
            table.upsert(record, Query().key == record["key"])
        self._notify(device, day)
        return True

    def remove_clip(self, device_id: str, day: str, key: str) -> bool:
        with self._lock, self._shard(device_id, day) as db:
            removed = db.table("clips", cache_size=0).remove(Query().key == key)
        if removed:
            self._notify(device_id, day)
        return bool(removed)

    def get_clip(self, device_id: str, day: str, key: str) -> dict[str, Any] | None:
        with self._lock, self._shard(device_id, day) as db:
            doc = db.table("clips", cache_size=0).get(Query().key == key)
        return dict(doc) if doc is not None else None

    def clips_for_day(self, device_id: str, day: str) -> list[dict[str, Any]]:
        with self._lock, self._shard(device_id, day) as db:
            docs = db.table("clips", cache_size=0).all()
        return sorted((dict(d) for d in docs), key=lambda d: d["captured_at"])

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

    def drop_device(self, device_id: str) -> None:
        """Forget every clip of a device (its objects are already deleted)."""
        base = self.root / "clips" / _dir_name(device_id)
        with self._lock:
            days = self.days(device_id)
            for shard in base.glob("*.db"):
                shard.unlink()
            if base.is_dir():
                base.rmdir()
        for day in days:
            self._notify(device_id, day)

    def has_clip(self, device_id: str, day: str, key: str) -> bool:
        return self.get_clip(device_id, day, key) is not None

    def _notify(self, device_id: str, day: str) -> None:
        for listener in self._listeners:
            listener(device_id, day)
