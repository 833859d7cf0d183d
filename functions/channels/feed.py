"""Where events come from: a device's batch, a clip just indexed, a camera deleted. Each a small function the
routes and handlers call with the services; the hub does the rest without blocking them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryospy.common.timefmt import utc_now
from cryospy.functions.errors import KeysLocked

from .event import HomeEvent, parse_device_events
from .mqtt import CameraState

if TYPE_CHECKING:
    from cryospy.functions.devices.registry import Device
    from cryospy.functions.index.records import ClipRecord
    from cryospy.functions.services import Services


def contact(services: Services, device_id: str) -> None:
    """Any authenticated request of a camera's agent: ends a silence (channels/presence.py)."""
    resumed = services.presence.seen(device_id)
    if resumed:
        services.home_events.publish(resumed)


def from_device(services: Services, device: Device, doc: dict[str, Any]) -> dict[str, Any]:
    events = parse_device_events(device.device_id, doc)
    for event in events:
        services.presence.reported(event)
    services.home_events.publish(events)
    services.devices.touch(device.device_id)
    return {"accepted": len(events)}


def clip_stored(services: Services, device_id: str, record: ClipRecord) -> None:
    """After a new clip is indexed: the camera's storage use and newest capture time (MQTT sensors)."""
    if not services.home_events.wants("clip_stored"):
        return                      # the usage read below is not free; skip it when no channel takes these
    stored = services.index.usage(device_id).bytes
    services.home_events.publish([HomeEvent(camera=device_id, kind="clip_stored", at=utc_now(),
                                            clip_sequence=record.sequence, stored_bytes=stored,
                                            last_clip_at=record.captured_at)])


def camera_added(services: Services, device_id: str) -> None:
    services.home_events.publish([HomeEvent(camera=device_id, kind="camera_added", at=utc_now())])


def camera_removed(services: Services, device_id: str) -> None:
    services.presence.forget(device_id)
    services.live.forget(device_id)     # its viewers and live parts' facts (rows in PostgreSQL)
    services.home_events.publish([HomeEvent(camera=device_id, kind="camera_removed", at=utc_now())])


def camera_states(services: Services) -> dict[str, CameraState]:
    """Every enrolled camera with its connectivity (as far as presence knows), storage use and newest clip
    time (unknown while the index is locked): what MQTT announces on each connect."""
    out: dict[str, CameraState] = {}
    for device in services.devices.list():
        if device.retired:
            continue
        state = out[device.device_id] = CameraState(connectivity=services.presence.connectivity(device.device_id))
        try:
            state.storage_bytes = services.index.usage(device.device_id).bytes
            days = services.index.days(device.device_id, newest=1)
            clips = services.index.clips_for_day(device.device_id, days[-1]) if days else []
            state.last_clip = max((c.captured_at for c in clips), default=None)
        except KeysLocked:
            pass
    return out
