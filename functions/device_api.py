"""What a device asks for besides upload slots: its settings (with ETags) and heartbeats."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError

from cryospy.common.objectkeys import ObjectKeyError, parse_clip_key
from cryospy.common.settings import DEFAULT_SETTINGS, DeviceSettings

from . import validate
from .devices import Device
from .errors import BadRequest, Conflict
from .events import ObjectEvent
from .services import Services

HEARTBEAT_FIELDS = {"agent_version", "spool_depth", "spool_bytes", "dropped_clips", "source_state",
                    "motion_state", "settings_etag", "last_sequence", "uptime_s"}


def device_settings(device: Device) -> DeviceSettings:
    return DeviceSettings.from_dict(device.settings, base=DEFAULT_SETTINGS)


def settings_document(services: Services, device: Device) -> tuple[dict[str, Any], str]:
    """The document and its ETag. The ETag covers the whole document (a key rotation must not be a 304)."""
    settings = device_settings(device)
    doc = {"device_id": device.device_id, "settings": settings.to_dict(),
           "deployment_public_key": services.vault.public_key().to_text()}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return doc, f'"{digest}"'


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
        "motion_state": validate.string(doc, "motion_state", 300, default="ok"),
        "settings_etag": validate.string(doc, "settings_etag", 100, default=""),
        "last_sequence": validate.integer(doc, "last_sequence", -1, 2**63 - 1, default=-1),
        "uptime_s": validate.number(doc, "uptime_s", 0, 10**10, default=0.0),
    }
    services.devices.touch(device.device_id, beat)
    _, etag = settings_document(services, device)
    return {"ok": True, "settings_etag": etag, "settings_changed": beat["settings_etag"] not in ("", etag)}


def confirm_upload(services: Services, device: Device, doc: dict[str, Any]) -> dict[str, Any]:
    """The device says "I have uploaded this clip": queue its ingest now rather than wait for MinIO's
    notification, which its persistent store delivers only every second or two. The notification still
    arrives and is recognised as the same event (same key and ETag), so the clip is processed once."""
    validate.only_known(doc, {"key"})
    key = validate.string(doc, "key", 1024)
    try:
        ck = parse_clip_key(key)
    except ObjectKeyError as exc:
        raise BadRequest(str(exc), field="key") from None
    if ck.device_id != device.device_id:
        raise BadRequest("that key belongs to another device", field="key")
    if services.event_sink is None:
        return {"queued": 0}
    try:
        head = services.handler_client.head_object(Bucket=services.bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise Conflict("no such object: upload the clip before confirming it") from None
        raise
    event = ObjectEvent("s3:ObjectCreated:Put", services.bucket, key, int(head["ContentLength"]),
                        head["ETag"].strip('"'), None, None)
    return {"queued": services.event_sink([event])}
