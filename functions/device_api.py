"""What a device asks for besides upload slots: its settings (with ETags) and heartbeats."""

from __future__ import annotations

from typing import Any

from cryospy.common.settings import DEFAULT_SETTINGS, DeviceSettings

from . import validate
from .devices import Device
from .services import Services

HEARTBEAT_FIELDS = {"agent_version", "spool_depth", "spool_bytes", "dropped_clips", "source_state",
                    "settings_etag", "last_sequence", "uptime_s"}


def device_settings(device: Device) -> DeviceSettings:
    return DeviceSettings.from_dict(device.settings, base=DEFAULT_SETTINGS)


def settings_document(services: Services, device: Device) -> tuple[dict[str, Any], str]:
    settings = device_settings(device)
    doc = {"device_id": device.device_id, "settings": settings.to_dict(),
           "deployment_public_key": services.vault.public_key().to_text()}
    return doc, settings.etag()


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def record_heartbeat(services: Services, device: Device, doc: dict[str, Any]) -> dict[str, Any]:
    validate.only_known(doc, HEARTBEAT_FIELDS)
    beat = {
        "agent_version": validate.string(doc, "agent_version", 64, default=""),
        "spool_depth": validate.integer(doc, "spool_depth", 0, 10**9, default=0),
        "spool_bytes": validate.integer(doc, "spool_bytes", 0, 2**62, default=0),
        "dropped_clips": validate.integer(doc, "dropped_clips", 0, 10**12, default=0),
        "source_state": validate.string(doc, "source_state", 300, default="unknown"),
        "settings_etag": validate.string(doc, "settings_etag", 100, default=""),
        "last_sequence": validate.integer(doc, "last_sequence", -1, 2**63 - 1, default=-1),
        "uptime_s": validate.number(doc, "uptime_s", 0, 10**10, default=0.0),
    }
    services.devices.touch(device.device_id, beat)
    _, etag = settings_document(services, device)
    return {"ok": True, "settings_etag": etag, "settings_changed": beat["settings_etag"] not in ("", etag)}
