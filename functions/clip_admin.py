"""Admin actions on single clips: mark as protected evidence (never deleted by retention), and delete."""

from __future__ import annotations

from typing import Any

from cryospy.common.objectkeys import ClipKey, ObjectKeyError, parse_clip_key

from . import retention, validate
from .errors import BadRequest, Conflict, NotFound
from .services import Services


def _clip_key(doc: dict[str, Any]) -> ClipKey:
    try:
        return parse_clip_key(validate.string(doc, "key", 1024))
    except ObjectKeyError as exc:
        raise BadRequest(str(exc), field="key") from None


def _indexed(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    ck = _clip_key(doc)
    record = services.index.get_clip(ck.device_id, ck.day, ck.key)
    if record is None:
        raise NotFound(f"no indexed clip {ck.key!r}")
    return record


def set_protected(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    """Under the device's retention lock, so a retention pass cannot delete the clip after this answers."""
    validate.only_known(doc, {"key", "protected"})
    protected = validate.boolean(doc, "protected")
    with retention.device_lock(_device_of(doc)):
        record = _indexed(services, doc)
        services.index.update_clip(record["device_id"], record["day"], record["key"], {"protected": protected})
    return {"key": record["key"], "protected": protected}


def delete(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    validate.only_known(doc, {"key"})
    with retention.device_lock(_device_of(doc)):
        record = _indexed(services, doc)
        if record.get("protected"):
            raise Conflict("the clip is protected evidence; unprotect it first if you really want it gone")
        retention.delete_clip(services, record)
    return {"key": record["key"], "deleted": True}


def _device_of(doc: dict[str, Any]) -> str:
    return _clip_key(doc).device_id
