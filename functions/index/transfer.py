"""Moving a whole clip index from one store to another (``cryospy db migrate``, infra/db_migrate.py).

Why not :meth:`ClipIndex.upsert_clip <cryospy.functions.index.protocol.ClipIndex.upsert_clip>`: the store
owns the live-stream numbering (``live``) and sets it on first insert from the device's counters, so replaying
a history through upserts would renumber every clip (and a clip older than the newest numbered one would lose
its number). An import writes records as they are, numbering and all, and sets the device's counters to the
source's afterwards. It also writes a whole day at once, which the TinyDB store needs to stay linear (an
upsert rewrites the day's shard each time).

Every index store implements :class:`IndexTransfer` beside :class:`ClipIndex`; the migration uses nothing
else to read or write, so a store that passes the conformance suite and this protocol's tests
(tests/unit/test_index_transfer.py) can be migrated to and from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryospy.functions.errors import FunctionsError
from cryospy.functions.index.records import ClipRecord, DeviceUsage
from cryospy.functions.index.usage import LiveCounters


class DayNotEmpty(FunctionsError):
    """An import into a device-day that already holds clips (a migration's target must start empty)."""

    def __init__(self, device_id: str, day: str):
        super().__init__(f"cannot import {device_id}'s clips of {day}: the target already holds clips of that day; "
                         "migrate into an empty store")


def check_import(device_id: str, day: str, records: Sequence[ClipRecord]) -> None:
    if any(r.device_id != device_id or r.day != day for r in records):
        raise ValueError(f"import_day({device_id!r}, {day!r}) was given another device's or day's clips")


@dataclass(frozen=True)
class DeviceTotals:
    """What the index keeps per device beside its clips: its running totals and its live-stream counters.
    A device can have totals and no clips (its clips were deleted; its live numbering carries on)."""
    device_id: str
    usage: DeviceUsage
    live: LiveCounters


class IndexTransfer(Protocol):
    def device_totals(self) -> list[DeviceTotals]:
        """Every device the index keeps anything for, sorted by device id."""
        ...

    def import_day(self, device_id: str, day: str, records: Sequence[ClipRecord]) -> None:
        """Write one device-day's clips as given (``live`` kept, ``fragments`` loaded: what
        ``clips_for_day(with_fragments=True)`` returns), adding them to the device's totals. The day must
        not hold clips yet."""
        ...

    def import_device(self, totals: DeviceTotals) -> None:
        """Set the device's live-stream counters and quarantine figure (bytes and clips come from the clips
        imported)."""
        ...

    def clear(self) -> None:
        """Forget every clip and device (``--force`` on a target that is not empty)."""
        ...
