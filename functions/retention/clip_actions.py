"""The admin's requests about single clips: mark as protected evidence (never deleted by retention), and
delete one (through :mod:`.deletion`)."""

from __future__ import annotations

from typing import Any

from cryospy.common.objectkeys import ObjectKeyError
from cryospy.functions.api import validate
from cryospy.functions.clips.place import ClipPlace, locate
from cryospy.functions.errors import BadRequest, Conflict, NotFound
from cryospy.functions.index.records import ClipRecord
from cryospy.functions.retention.deletion import delete_clip, device_lock
from cryospy.functions.services import Services


def _place(services: Services, doc: dict[str, Any]) -> ClipPlace:
    try:
        return locate(services.devices, validate.string(doc, "key", 1024))
    except ObjectKeyError as exc:
        raise BadRequest(str(exc), field="key") from None


def _indexed(services: Services, doc: dict[str, Any]) -> ClipRecord:
    place = _place(services, doc)
    record = services.index.get_clip(place.device_id, place.day, place.key)
    if record is None:
        raise NotFound(f"no indexed clip {place.key!r}")
    return record


def set_protected(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    """Under the device's retention lock, so a retention pass cannot delete the clip after this answers."""
    validate.only_known(doc, {"key", "protected"})
    protected = validate.boolean(doc, "protected")
    with device_lock(_place(services, doc).device_id):
        record = _indexed(services, doc)
        services.index.update_clip(record.device_id, record.day, record.key, protected=protected)
    services.audit.record("clip.protect" if protected else "clip.unprotect", device=record.device_id,
                          clip=record.key)
    return {"key": record.key, "protected": protected}


def delete(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    validate.only_known(doc, {"key"})
    with device_lock(_place(services, doc).device_id):
        record = _indexed(services, doc)
        if record.protected:
            raise Conflict("the clip is protected evidence; unprotect it first if you really want it gone")
        delete_clip(services, record)
    services.audit.record("clip.delete", device=record.device_id, clip=record.key)
    return {"key": record.key, "deleted": True}
