"""Admin actions on single clips: mark as protected evidence (never deleted by retention), and delete."""

from __future__ import annotations

from typing import Any

from cryospy.common.objectkeys import ObjectKeyError, parse_clip_key

from . import retention, validate
from .errors import BadRequest, Conflict, NotFound
from .services import Services


def _indexed(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    key = validate.string(doc, "key", 1024)
    try:
        ck = parse_clip_key(key)
    except ObjectKeyError as exc:
        raise BadRequest(str(exc), field="key") from None
    record = services.index.get_clip(ck.device_id, ck.day, key)
    if record is None:
        raise NotFound(f"no indexed clip {key!r}")
    return record


def set_protected(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    validate.only_known(doc, {"key", "protected"})
    record = _indexed(services, doc)
    protected = validate.boolean(doc, "protected")
    services.index.update_clip(record["device_id"], record["day"], record["key"], {"protected": protected})
    return {"key": record["key"], "protected": protected}


def delete(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    validate.only_known(doc, {"key"})
    record = _indexed(services, doc)
    if record.get("protected"):
        raise Conflict("the clip is protected evidence; unprotect it first if you really want it gone")
    retention.delete_clip(services, record)
    return {"key": record["key"], "deleted": True}
