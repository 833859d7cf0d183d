"""Admin clip queries over the sharded index: by device, time range and motion, newest first, paged.

The cursor is the last returned clip's ``captured_at`` plus key, so pages stay stable while new clips
arrive. :func:`scan_query` answers a query from any :class:`~cryospy.functions.index.protocol.ClipIndex` by
opening only the days that overlap the range (what the TinyDB store does); a store with real queries
answers :meth:`ClipIndex.query` its own way, and the conformance suite holds both to the same answers.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryospy.common.timefmt import utc_stamp
from cryospy.functions.api import json_limits, validate
from cryospy.functions.errors import BadRequest
from cryospy.functions.index.records import ClipRecord

if TYPE_CHECKING:
    from cryospy.functions.index.protocol import ClipIndex

MAX_LIMIT = 500


@dataclass(frozen=True)
class ClipQuery:
    device_id: str | None
    start: datetime | None
    end: datetime | None
    motion: bool | None
    limit: int
    cursor: tuple[str, str] | None

    @classmethod
    def parse(cls, params: dict[str, str]) -> ClipQuery:
        validate.only_known(params, {"device", "from", "to", "motion", "limit", "cursor"})
        start = validate.timestamp(params, "from") if params.get("from") else None
        end = validate.timestamp(params, "to") if params.get("to") else None
        if start and end and end < start:
            raise BadRequest("'to' is before 'from'", field="to")
        motion = params.get("motion")
        if motion not in (None, "true", "false"):
            raise BadRequest("'motion' must be true or false", field="motion")
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            raise BadRequest("'limit' must be an integer", field="limit") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"'limit' must be between 1 and {MAX_LIMIT}", field="limit")
        cursor = None
        if params.get("cursor"):
            try:
                raw = json_limits.loads(base64.urlsafe_b64decode(params["cursor"].encode()))
                cursor = (str(raw[0]), str(raw[1]))
            except (ValueError, TypeError, IndexError):
                raise BadRequest("'cursor' is not one this API issued", field="cursor") from None
        return cls(params.get("device") or None, start, end, None if motion is None else motion == "true", limit,
                   cursor)


@dataclass(frozen=True)
class ClipPage:
    clips: list[ClipRecord]
    next_cursor: str | None
    matched: int

    def to_doc(self) -> dict[str, Any]:
        return {"clips": [c.to_doc() for c in self.clips], "next_cursor": self.next_cursor, "matched": self.matched}


def scan_query(index: ClipIndex, q: ClipQuery) -> ClipPage:
    devices = [q.device_id] if q.device_id else index.devices()
    lo = utc_stamp(q.start) if q.start else ""
    hi = utc_stamp(q.end) if q.end else "\uffff"
    day_lo, day_hi = lo[:10], hi[:10] if q.end else "\uffff"
    matches: list[ClipRecord] = []
    for device in devices:
        for day in reversed(index.days(device)):
            if not day_lo <= day <= day_hi:
                continue
            for clip in index.clips_for_day(device, day):
                if not lo <= clip.captured_at <= hi:
                    continue
                if q.motion is not None and clip.motion != q.motion:
                    continue
                if q.cursor and clip.order >= q.cursor:
                    continue
                matches.append(clip)
    matches.sort(key=lambda c: c.order, reverse=True)
    page = matches[:q.limit]
    return ClipPage(page, page_cursor(page[-1]) if len(matches) > q.limit and page else None, len(matches))


def page_cursor(last: ClipRecord) -> str:
    """The cursor of the page after ``last`` (opaque to callers; :meth:`ClipQuery.parse` reads it back)."""
    return base64.urlsafe_b64encode(json.dumps(list(last.order)).encode()).decode()
