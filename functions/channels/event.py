"""The one typed event every channel receives, and the parser of what devices post.

A device posts ``{"events": [{"kind": "motion_start", "at": "…Z", "id": "…", "score": 0.12}, …]}``; the
camera id comes from its credentials, never from the body. Handlers make ``clip_stored`` (storage use and
last-clip time after a clip is indexed) and the admin makes ``camera_added`` and ``camera_removed``. Payloads
carry camera ids, times, scores and clip sequence numbers: never keys, secrets, object names or frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from cryospy.common.timefmt import utc_stamp
from cryospy.functions.api import validate
from cryospy.functions.errors import BadRequest

DEVICE_KINDS = ("motion_start", "motion_end", "motion_clip", "camera_online", "camera_offline", "source_problem")
SERVER_KINDS = ("clip_stored", "camera_added", "camera_removed", "test")
KINDS = DEVICE_KINDS + SERVER_KINDS
BATCH_MAX = 100
_FIELDS = {"kind", "at", "id", "score", "duration_s", "clip_sequence", "detail"}


@dataclass(frozen=True)
class HomeEvent:
    camera: str
    kind: str
    at: str                          # ISO 8601 UTC, milliseconds, "Z"
    id: str = ""                     # a motion run's id (start, end and clip share it)
    score: float | None = None
    duration_s: float | None = None
    clip_sequence: int | None = None
    detail: str = ""                 # why a camera is offline / what the source problem is (redacted by the agent)
    stored_bytes: int | None = None  # clip_stored: the camera's storage use
    last_clip_at: str = ""           # clip_stored: capture time of the newest clip

    def payload(self) -> dict[str, Any]:
        """The JSON every channel sends (fields that do not apply are left out)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


TEXT = {
    "motion_start": ("Motion", "Motion on {camera} at {at} (score {score})", "warning", "4"),
    "motion_end": ("Motion ended", "Motion on {camera} ended at {at}", "white_check_mark", "2"),
    "motion_clip": ("Motion clip", "The clip #{clip_sequence} of {camera} holds the motion", "movie_camera", "2"),
    "camera_online": ("Camera online", "{camera} is recording again ({at})", "white_check_mark", "3"),
    "camera_offline": ("Camera offline", "{camera} went offline at {at}: {detail}", "rotating_light", "5"),
    "source_problem": ("Camera problem", "{camera} at {at}: {detail}", "warning", "4"),
    "clip_stored": ("Clip stored", "A clip of {camera} captured at {last_clip_at} is stored", "floppy_disk", "1"),
    "camera_added": ("Camera added", "{camera} was added to CryoSpy", "heavy_plus_sign", "2"),
    "camera_removed": ("Camera removed", "{camera} was removed from CryoSpy", "wastebasket", "2"),
    "test": ("CryoSpy test", "A test event from CryoSpy ({at}): this channel works", "bell", "3"),
}


def message(event: HomeEvent) -> tuple[str, str, str, str]:
    """(title, text, tag, priority) for an event."""
    title, text, tag, priority = TEXT[event.kind]
    fields = {**event.payload(), "camera": event.camera, "score": f"{event.score or 0:.2f}"}
    return f"CryoSpy: {title}", text.format_map(_Blank(fields)), tag, priority


class _Blank(dict):   # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


def _stamp(doc: dict[str, Any], where: str) -> str:
    raw = validate.string(doc, "at", 40)
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{where}.at must be an ISO 8601 time such as 2026-01-01T12:00:00.000Z, got {raw!r}",
                         field=f"{where}.at") from None
    if t.tzinfo is None:
        raise BadRequest(f"{where}.at must carry a time zone (Z)", field=f"{where}.at")
    return utc_stamp(t)


def _one(camera: str, doc: Any, where: str) -> HomeEvent:
    if not isinstance(doc, dict):
        raise BadRequest(f"{where} must be an object", field=where)
    try:
        validate.only_known(doc, _FIELDS)
        kind = validate.string(doc, "kind", 32)
        if kind not in DEVICE_KINDS:
            raise BadRequest(f"unknown kind {kind!r}; a device may send {', '.join(DEVICE_KINDS)}", field="kind")
        return HomeEvent(
            camera=camera, kind=kind, at=_stamp(doc, where),
            id=validate.string(doc, "id", 64, default=""),
            score=validate.number(doc, "score", 0, 1) if doc.get("score") is not None else None,
            duration_s=validate.number(doc, "duration_s", 0, 86_400) if doc.get("duration_s") is not None else None,
            clip_sequence=validate.integer(doc, "clip_sequence", 0, 2**63 - 1)
            if doc.get("clip_sequence") is not None else None,
            detail=validate.string(doc, "detail", 300, default=""))
    except BadRequest as exc:
        if exc.field and not exc.field.startswith(where):
            raise BadRequest(exc.message, field=f"{where}.{exc.field}") from None
        raise


def parse_device_events(camera: str, doc: dict[str, Any]) -> list[HomeEvent]:
    """The events of one device's batch; BadRequest names the first bad field (nothing is taken then)."""
    validate.only_known(doc, {"events"})
    events = doc.get("events")
    if not isinstance(events, list) or len(events) > BATCH_MAX:
        raise BadRequest(f"'events' must be a list of at most {BATCH_MAX} events", field="events")
    return [_one(camera, e, f"events[{i}]") for i, e in enumerate(events)]
