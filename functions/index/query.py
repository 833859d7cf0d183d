"""Admin clip queries over the sharded index: by device, time range and motion, newest first, paged.

The cursor is the last returned clip's ``captured_at`` plus key, so pages stay stable while new clips
arrive. Only the shards (device-days) that overlap the range are opened.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryospy.functions.api import json_limits, validate
from cryospy.functions.errors import BadRequest
from cryospy.functions.services import Services

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


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_query(services: Services, q: ClipQuery) -> dict[str, Any]:
    devices = [q.device_id] if q.device_id else services.index.devices()
    lo = _iso(q.start) if q.start else ""
    hi = _iso(q.end) if q.end else "\uffff"
    day_lo, day_hi = lo[:10], hi[:10] if q.end else "\uffff"
    matches: list[dict[str, Any]] = []
    for device in devices:
        for day in reversed(services.index.days(device)):
            if not day_lo <= day <= day_hi:
                continue
            for clip in services.index.clips_for_day(device, day):
                if not lo <= clip["captured_at"] <= hi:
                    continue
                if q.motion is not None and bool(clip.get("motion")) != q.motion:
                    continue
                if q.cursor and (clip["captured_at"], clip["key"]) >= q.cursor:
                    continue
                matches.append(clip)
    matches.sort(key=lambda c: (c["captured_at"], c["key"]), reverse=True)
    page = matches[:q.limit]
    more = len(matches) > q.limit
    cursor = None
    if more and page:
        last = page[-1]
        cursor = base64.urlsafe_b64encode(json.dumps([last["captured_at"], last["key"]]).encode()).decode()
    return {"clips": page, "next_cursor": cursor, "matched": len(matches)}
