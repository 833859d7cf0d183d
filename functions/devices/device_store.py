"""Where the device registry keeps its records: a small interface, the embedded file and PostgreSQL.

:class:`~cryospy.functions.devices.registry.DeviceRegistry` holds the rules (secrets, storage tokens, trust on
first use of a signing key); a :class:`DeviceStore` holds the records, one JSON document per device. The
embedded :class:`FileDeviceStore` is the TinyDB file it always was, read into memory once and written through
(the runtime is its only writer); :class:`~cryospy.functions.devices.pg_device_store.PostgresDeviceStore`
(``database_url``) is shared by every runtime. Both are held to the same tests
(tests/unit/test_device_store.py).

What a store promises: :meth:`DeviceStore.insert` fails with Conflict when the id or the storage token is
taken, checked atomically with the write (two runtimes enrolling the same id cannot both win);
:meth:`DeviceStore.change` reads, changes and writes one device's document atomically, so a check made in
``change`` (a signing key registered once) holds against every other writer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tinydb import Query, TinyDB

from cryospy.functions.errors import Conflict, NotFound
from cryospy.functions.index.tinydb_files import AtomicJSONStorage

Doc = dict[str, Any]


class DeviceStore(Protocol):
    def get(self, device_id: str) -> Doc | None: ...

    def all(self) -> list[Doc]: ...

    def by_token(self, token: str) -> str | None:
        """The id of the device whose storage token this is (a removed device's token may stay taken)."""
        ...

    def insert(self, doc: Doc) -> None:
        """Add a device (Conflict: its id or storage token is taken)."""
        ...

    def change(self, device_id: str, fn: Callable[[Doc], Doc]) -> Doc:
        """Replace the device's document by ``fn(current)`` atomically; NotFound when there is none. Whatever
        ``fn`` raises leaves the document as it was."""
        ...

    def remove(self, device_id: str) -> None: ...

    def clear(self) -> None:
        """Forget every device and token (``cryospy db migrate --force`` on a target that is not empty)."""
        ...

    def close(self) -> None: ...


class FileDeviceStore:
    """The embedded registry file: served from memory (every device request authenticates, so re-parsing the
    file each time would dominate the API's cost), every change written through before it is visible. Being
    the only writer is what makes the in-memory copy coherent."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.RLock()
        with self._db() as db:
            self._docs: dict[str, Doc] = {d["device_id"]: dict(d) for d in self._table(db).all()}
        self._tokens = {d["storage_token"]: i for i, d in sorted(self._docs.items()) if d.get("storage_token")}

    def _db(self) -> TinyDB:
        return TinyDB(self.path, storage=AtomicJSONStorage)

    @staticmethod
    def _table(db: TinyDB):  # type: ignore[no-untyped-def]
        return db.table("devices", cache_size=0)

    def _persist(self, doc: Doc | None, device_id: str) -> None:
        with self._db() as db:
            if doc is None:
                self._table(db).remove(Query().device_id == device_id)
            else:
                self._table(db).upsert(doc, Query().device_id == device_id)

    def get(self, device_id: str) -> Doc | None:
        with self._lock:
            doc = self._docs.get(device_id)
            return dict(doc) if doc is not None else None

    def all(self) -> list[Doc]:
        with self._lock:
            return [dict(d) for d in self._docs.values()]

    def by_token(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.get(token)

    def insert(self, doc: Doc) -> None:
        with self._lock:
            device_id, token = doc["device_id"], doc.get("storage_token")
            if device_id in self._docs:
                raise Conflict(f"device {device_id!r} already exists (possibly retired); pick another id")
            if token and token in self._tokens:
                raise Conflict("that storage token is taken; draw another")
            self._persist(doc, device_id)
            self._docs[device_id] = dict(doc)
            if token:
                self._tokens[token] = device_id

    def change(self, device_id: str, fn: Callable[[Doc], Doc]) -> Doc:
        with self._lock:
            current = self._docs.get(device_id)
            if current is None:
                raise NotFound(f"no device {device_id!r}")
            doc = fn(dict(current))
            self._persist(doc, device_id)
            self._docs[device_id] = doc
            if doc.get("storage_token"):
                self._tokens.setdefault(doc["storage_token"], device_id)
            return dict(doc)

    def remove(self, device_id: str) -> None:
        with self._lock:
            if device_id not in self._docs:
                raise NotFound(f"no device {device_id!r}")
            self._persist(None, device_id)
            del self._docs[device_id]
            # The token stays taken for the life of this process; a new one is 130 random bits anyway.

    def clear(self) -> None:
        with self._lock:
            with self._db() as db:
                self._table(db).truncate()
            self._docs.clear()
            self._tokens.clear()

    def close(self) -> None:
        pass
