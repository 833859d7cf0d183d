"""Upload slots: a short-lived presigned PUT for a key the server chose, pinning exactly one clip.

The key names the device by its storage token, never by its name (``clips/<token>/<day>/<time>-<seq>.cse``);
the agent learns the token from its settings document and seals the same key into the clip's header.

The URL is signed by an identity that may only PutObject under ``clips/``; it pins Content-Length,
Content-Type, the SHA-256 the device declared (MinIO verifies the body against it) and ``If-None-Match: *``
so a slot can never overwrite an existing object, not even its own upload a second time.

A device still awaiting its signing key (created without one) gets no slot: nothing it uploaded could be
verified, so it must register its key first (``POST /v1/device/signing-key``; the agent does this at start).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryospy.common.objectkeys import clip_key
from cryospy.common.timefmt import utc_stamp_seconds
from cryospy.functions.api import validate
from cryospy.functions.devices.registry import Device
from cryospy.functions.errors import BadRequest, Conflict
from cryospy.functions.services import Services

CONTENT_TYPE = "application/octet-stream"
SLOT_FIELDS = {"size", "sha256", "captured_at", "sequence", "duration_s", "motion"}


@dataclass(frozen=True)
class SlotRequest:
    size: int
    sha256_b64: str
    captured_at: datetime
    sequence: int
    duration_s: float

    @classmethod
    def parse(cls, doc: dict[str, Any], max_bytes: int) -> SlotRequest:
        validate.only_known(doc, SLOT_FIELDS)
        return cls(
            size=validate.integer(doc, "size", 1, max_bytes),
            sha256_b64=validate.sha256_b64(doc, "sha256"),
            captured_at=validate.timestamp(doc, "captured_at"),
            sequence=validate.integer(doc, "sequence", 0, 2**63 - 1),
            duration_s=validate.number(doc, "duration_s", 0.0, 24 * 3600.0, default=0.0),
        )


def require_signing_key(device: Device) -> None:
    if not device.signing_key:
        raise Conflict(f"device {device.device_id!r} has no signing key yet: register the signing key first "
                       "(POST /v1/device/signing-key; the edge agent does this when it starts), then ask again")


def issue_slot(services: Services, device: Device, req: SlotRequest) -> dict[str, Any]:
    require_signing_key(device)
    services.slot_limiter.take(device.device_id)
    now = services.clock()
    if req.captured_at > now + timedelta(minutes=10):
        raise BadRequest("'captured_at' is in the future; check the device clock (NTP)", field="captured_at")
    key = clip_key(device.storage_token, req.captured_at, req.sequence)
    headers = {
        "Content-Length": str(req.size), "Content-Type": CONTENT_TYPE,
        "x-amz-checksum-sha256": req.sha256_b64, "If-None-Match": "*",
    }
    url = services.upload_presigner(device).presign_put(services.bucket, key.key, headers,
                                                         services.slot_ttl_seconds, now)
    expires = now + timedelta(seconds=services.slot_ttl_seconds)
    return {"method": "PUT", "url": url, "headers": headers, "key": key.key,
            "expires_at": utc_stamp_seconds(expires)}
