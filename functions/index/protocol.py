"""The clip index as the rest of CryoSpy sees it: one interface, several possible stores.

The embedded default is :class:`~cryospy.functions.index.store.TinyDBIndex` (encrypted TinyDB shards on the
server's disk, one writer process). A store for more than one machine implements the same protocol and must
pass the same conformance suite (``tests/unit/index_conformance.py``). What every implementation promises:

* records are :class:`~cryospy.functions.index.records.ClipRecord` values, keyed by (device, day, object key);
  an upsert of an unchanged record changes nothing and returns False (every event may arrive twice);
* usage totals are running totals, correct after a crash, never a scan of the history;
* :meth:`ClipIndex.oldest_unprotected` reaches the oldest unprotected clip at a cost that does not grow with
  the device's history (retention calls it after every new clip);
* listeners hear ``(device_id, day)`` after each change, outside any lock;
* per-clip metadata is never plaintext at rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from cryospy.functions.index.listeners import Listener
from cryospy.functions.index.records import ClipRecord, DeviceUsage

if TYPE_CHECKING:
    from cryospy.functions.index.query import ClipPage, ClipQuery


class ClipIndex(Protocol):
    # -- writes --------------------------------------------------------------------------------------
    def upsert_clip(self, record: ClipRecord) -> bool:
        """Insert or replace by object key; True when anything changed. A record with ``fragments`` stores
        them; one without keeps the stored ones. The store owns ``live`` (set on first insert)."""
        ...

    def update_clip(self, device_id: str, day: str, key: str, **changes: Any) -> ClipRecord | None:
        """Change fields of an indexed clip; the new record, or None when the clip is not indexed."""
        ...

    def remove_clip(self, device_id: str, day: str, key: str) -> ClipRecord | None:
        """Forget a clip; the record it had, or None when it was not indexed."""
        ...

    def drop_device(self, device_id: str) -> None:
        """Forget every clip of a device (its objects are already deleted)."""
        ...

    def set_quarantined(self, device_id: str, nbytes: int) -> None:
        """What the device's quarantine holds now (counted against its quota, not in ``bytes``)."""
        ...

    # -- reads ---------------------------------------------------------------------------------------
    def get_clip(self, device_id: str, day: str, key: str) -> ClipRecord | None:
        """The clip's record, with its fragments."""
        ...

    def has_clip(self, device_id: str, day: str, key: str) -> bool: ...

    def clips_for_day(self, device_id: str, day: str, with_fragments: bool = False) -> list[ClipRecord]:
        """The day's clips in capture order; fragments only when asked (only playback needs them)."""
        ...

    def devices(self) -> list[str]: ...

    def days(self, device_id: str, newest: int | None = None, until: str | None = None) -> list[str]:
        """The days that hold clips of the device, oldest first: all of them, or only the ``newest`` ones
        (those up to and including ``until`` when given), at a cost that grows with ``newest``, not with the
        device's history (the overview and the chain check ask after every clip)."""
        ...

    def adjacent_days(self, device_id: str, day: str) -> tuple[str | None, str | None]:
        """The days before and after ``day`` that hold clips of the device (None at either end), at a cost
        that does not grow with the history (a day page's links, rendered after every clip)."""
        ...

    def usage(self, device_id: str | None = None) -> DeviceUsage:
        """One device's totals, or all devices' together."""
        ...

    def live_clips(self, device_id: str, count: int = 4) -> list[ClipRecord]:
        """The device's newest clips that joined its live stream, oldest first, with fragments."""
        ...

    def find_sequence(self, device_id: str, sequence: int, from_day: str, direction: int,
                      max_days: int = 3) -> ClipRecord | None:
        """The clip with this sequence number in ``from_day`` or up to ``max_days`` days before it
        (``direction`` -1) or after it (+1)."""
        ...

    def oldest_unprotected(self, device_id: str | None = None) -> Iterator[ClipRecord]:
        """Unprotected clips, oldest first (one device, or all merged), read lazily: stop iterating once
        enough is found. A clip deleted meanwhile may still be yielded; read it again before acting on it."""
        ...

    def query(self, q: ClipQuery) -> ClipPage:
        """The admin clip query: by device, time range and motion, newest first, paged."""
        ...

    # -- lifecycle -----------------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None: ...

    def close(self) -> None:
        """A clean stop (see each store for what it guarantees after one that was not)."""
        ...
