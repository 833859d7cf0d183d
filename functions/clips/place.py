"""Where a clip key belongs: the device behind its pseudonymous owner segment, and the day of its index shard.

Object keys name a device only by its storage token (see :mod:`cryospy.common.objectkeys`); the index is kept
per device name and day. Every handler that starts from a key (ingest, removal, the admin's clip actions, the
reconciler, the media endpoint, upload confirmations) goes through :func:`locate`, so the token is mapped back
in one place, and legacy keys that still carry the name are handled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryospy.common.objectkeys import ClipKey, parse_clip_key
from cryospy.functions.devices.registry import Device, DeviceRegistry


@dataclass(frozen=True)
class ClipPlace:
    key: str
    clip: ClipKey
    device: Device

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def day(self) -> str:
        return self.clip.day


def locate(devices: DeviceRegistry, key: str) -> ClipPlace:
    """Raises ObjectKeyError for a key CryoSpy would not make, NotFound when no device owns it (a token never
    issued here, or a device deleted since)."""
    clip = parse_clip_key(key)
    return ClipPlace(key, clip, devices.resolve(clip.owner))
