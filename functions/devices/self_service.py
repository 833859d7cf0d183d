"""What a device asks for besides upload slots: its signing key (trust on first use), its settings (with
ETags) and heartbeats.

The heartbeat carries the settings the agent applies and their ETag, so the admin can see what a camera
actually does and whether it has caught up with an edit (:func:`settings_in_sync`, :func:`settings_report`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from cryospy.common.objectkeys import ObjectKeyError, parse_clip_key
from cryospy.common.settings import DeviceSettings, SettingsError
from cryospy.functions.api import validate
from cryospy.functions.bucket import Bucket
from cryospy.functions.devices.lifecycle import parse_verify_key
from cryospy.functions.devices.registry import Device
from cryospy.functions.errors import BadRequest, Conflict
from cryospy.functions.events import ObjectEvent
from cryospy.functions.services import Services

log = logging.getLogger(__name__)

HEARTBEAT_FIELDS = {"agent_version", "spool_depth", "spool_bytes", "dropped_clips", "source_state",
                    "motion_state", "settings_etag", "last_sequence", "uptime_s", "settings", "pinned",
                    "record_mode", "record_mode_reason", "stream", "capture"}
# The agent config's local pins (they win over the server's settings on that camera), with the agent's bounds.
PINNED_FIELDS: dict[str, tuple[type, float, float]] = {
    "clip_seconds": (float, 2, 1800), "fps": (float, 1, 60), "width": (int, 0, 4096), "height": (int, 0, 4096),
    "crf": (int, 0, 51), "keyframe_seconds": (float, 0.5, 10), "settings_sync_seconds": (int, 5, 86_400),
}


def device_settings(device: Device) -> DeviceSettings:
    return DeviceSettings.from_dict(device.settings)


def settings_document(services: Services, device: Device) -> tuple[dict[str, Any], str]:
    """The document and its ETag. The ETag covers the whole document (a key rotation must not be a 304)."""
    settings = device_settings(device)
    doc = {"device_id": device.device_id, "settings": settings.to_dict(),
           "deployment_public_key": services.vault.public_key().to_text(),
           "storage_token": device.storage_token}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return doc, f'"{digest}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


def register_signing_key(services: Services, device: Device, doc: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Trust on first use: 201 when the key is stored now, 200 when the same key was registered before (agent
    restarts), Conflict when the device already has another key."""
    validate.only_known(doc, {"signing_key"})
    key = parse_verify_key(doc)
    try:
        updated, stored = services.devices.register_signing_key(device.device_id, key)
    except Conflict:
        log.warning("device %r tried to register a different signing key; refused", device.device_id)
        raise
    services.devices.touch(device.device_id)
    if stored:
        log.info("device %r registered its signing key (fingerprint %s)", device.device_id,
                 updated.signing_key_fingerprint)
    answer = {"device_id": device.device_id, "signing_key_fingerprint": updated.signing_key_fingerprint,
              "registered": "now" if stored else "before"}
    return answer, 201 if stored else 200


def _reported_settings(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The settings the agent says it applies, checked with the same rules as an admin's edit; only the
    settings it reported are kept (in the schema's order)."""
    raw = doc.get("settings")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest("'settings' must be an object of the settings the agent applies", field="settings")
    try:
        clean = DeviceSettings.from_dict(raw).to_dict()
    except SettingsError as exc:
        raise BadRequest(exc.message, field=f"settings.{exc.field}") from None
    return {name: value for name, value in clean.items() if name in raw}


def _pinned(doc: dict[str, Any]) -> dict[str, Any]:
    raw = doc.get("pinned")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("'pinned' must be an object of the agent config's local pins", field="pinned")
    unknown = sorted(set(raw) - set(PINNED_FIELDS))
    if unknown:
        raise BadRequest(f"unknown pin 'pinned.{unknown[0]}'; known pins: {', '.join(sorted(PINNED_FIELDS))}",
                         field=f"pinned.{unknown[0]}")
    out: dict[str, Any] = {}
    for name, (kind, lo, hi) in PINNED_FIELDS.items():
        if raw.get(name) is None:
            continue
        try:
            if kind is int:
                out[name] = validate.integer(raw, name, int(lo), int(hi))
            else:
                out[name] = validate.number(raw, name, lo, hi)
        except BadRequest as exc:
            raise BadRequest(exc.message, field=f"pinned.{name}") from None
    return out


def record_heartbeat(services: Services, device: Device, doc: dict[str, Any]) -> dict[str, Any]:
    validate.only_known(doc, HEARTBEAT_FIELDS)
    beat = {
        "agent_version": validate.string(doc, "agent_version", 64, default=""),
        "spool_depth": validate.integer(doc, "spool_depth", 0, 10**9, default=0),
        "spool_bytes": validate.integer(doc, "spool_bytes", 0, 2**62, default=0),
        "dropped_clips": validate.integer(doc, "dropped_clips", 0, 10**12, default=0),
        "source_state": validate.string(doc, "source_state", 300, default="unknown"),
        "motion_state": validate.string(doc, "motion_state", 300, default="ok"),
        "record_mode": validate.string(doc, "record_mode", 16, default=""),
        "record_mode_reason": validate.string(doc, "record_mode_reason", 200, default=""),
        "stream": validate.string(doc, "stream", 120, default=""),
        "capture": validate.string(doc, "capture", 160, default=""),
        "settings_etag": validate.string(doc, "settings_etag", 100, default=""),
        "last_sequence": validate.integer(doc, "last_sequence", -1, 2**63 - 1, default=-1),
        "uptime_s": validate.number(doc, "uptime_s", 0, 10**10, default=0.0),
        "settings": _reported_settings(doc),
        "pinned": _pinned(doc),
    }
    services.devices.touch(device.device_id, beat)
    _, etag = settings_document(services, device)
    return {"ok": True, "settings_etag": etag, "settings_changed": beat["settings_etag"] not in ("", etag)}


def settings_in_sync(services: Services, device: Device) -> bool:
    """Whether the device's last heartbeat reported the ETag of the settings document it would be served now
    (the ETag covers the settings and the deployment key). False before its first heartbeat."""
    reported = (device.heartbeat or {}).get("settings_etag") or ""
    return bool(reported) and reported == settings_document(services, device)[1]


def settings_report(services: Services, device: Device) -> dict[str, Any]:
    """What the admin page shows: per setting, the server's value and what the camera last reported.

    ``reported`` is None for a setting the camera did not report (an older agent, or no heartbeat yet);
    ``pinned`` lists the agent config's local pins, which win over the server's values on that camera.
    """
    beat = device.heartbeat or {}
    reported = beat.get("settings") or {}
    server = device_settings(device).to_dict()
    rows = [{"name": name, "server": value, "reported": reported.get(name),
             "matches": name in reported and reported[name] == value} for name, value in server.items()]
    return {"in_sync": settings_in_sync(services, device), "server_etag": settings_document(services, device)[1],
            "reported_etag": beat.get("settings_etag") or None, "reported_at": beat.get("received_at"),
            "settings": rows, "pinned": dict(beat.get("pinned") or {})}


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
    if ck.owner != device.storage_token:
        raise BadRequest("that key belongs to another device", field="key")
    head = Bucket.of(services).head(key)
    if head is None:
        raise Conflict("no such object: upload the clip before confirming it")
    event = ObjectEvent("s3:ObjectCreated:Put", services.bucket, key, int(head["ContentLength"]),
                        head["ETag"].strip('"'), None, None)
    return {"queued": services.event_sink.enqueue([event])}
