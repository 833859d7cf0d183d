"""Answers built from the day-by-day reads every :class:`~cryospy.functions.index.protocol.ClipIndex` has.

Both stores keep only a day's order in SQL or in a shard, and the fields these look at (``live``, ``sequence``)
are sealed, so the answer is found the same way everywhere: the nearest days first, stopping early. Shared
so that the stores cannot drift apart on what "the newest live clips" or "the neighbour in sequence" mean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryospy.functions.index.records import ClipRecord

if TYPE_CHECKING:
    from cryospy.functions.index.protocol import ClipIndex


def live_clips(index: ClipIndex, device_id: str, count: int) -> list[ClipRecord]:
    """The device's newest clips that joined its live stream (from its last two days), oldest first."""
    found: list[ClipRecord] = []
    for day in reversed(index.days(device_id, newest=2)):
        numbered = [c for c in index.clips_for_day(device_id, day, with_fragments=True) if c.live]
        found = numbered[-count:] + found
        if len(found) >= count:
            break
    return found[-count:]


def find_sequence(index: ClipIndex, device_id: str, sequence: int, from_day: str, direction: int,
                  max_days: int) -> ClipRecord | None:
    # A device's sequence numbers follow its capture time, so the neighbours are in the nearest days.
    if direction < 0:   # the chain check's question after every clip: only as many days as it reads
        days = list(reversed(index.days(device_id, newest=max_days, until=from_day)))
    else:
        days = [d for d in index.days(device_id) if d >= from_day][:max_days]
    for day in days:
        for clip in index.clips_for_day(device_id, day):
            if clip.sequence == sequence:
                return clip
    return None
