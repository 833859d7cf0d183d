"""The device side of live view: the watch long-poll, batches of live-part slots, and checking uploaded parts.

    GET  /v1/device/live/watch?watching=0|1&wait=S   answers as soon as "is anyone watching" differs from what
                                                     the agent believes, else after ``wait`` seconds (≤ 25)
    POST /v1/device/live/parts {"uploaded": [key…], "slots": n}
                                                     checks each uploaded part, answers n fresh slots and
                                                     whether anyone is still watching: one small request per part

A slot is a presigned PUT for a server-chosen ``live/<storage token>/…`` key (:mod:`cryospy.common.liveparts`),
signed by the shared presigner (whose policy allows ``clips/`` and ``live/``), pinning Content-Type and
``If-None-Match: *`` and valid for :data:`SLOT_TTL_S`. It cannot pin the size or digest (the slot is asked for
before the part exists), so the check below refuses any part over :data:`MAX_PART_BYTES`, and the runtime's
sweep deletes every object under ``live/`` :data:`PART_LIFETIME_S` after its slot was issued, refused or not.

An uploaded part is read back from the bucket and fully opened: header signature by *this* device's key,
the object key it was sealed for, every chunk and the content trailer, the live-part content type, and an
fMP4 with an init segment and at least one fragment. Anything else is refused and deleted at once; a key of
another device is refused without being touched.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryospy.common.keys import verify_key_from_text
from cryospy.common.liveparts import LIVE_CONTENT_TYPE, new_live_part_key, parse_live_part_key
from cryospy.common.objectkeys import ObjectKeyError
from cryospy.common.sealed import SealedFormatError, open_sealed
from cryospy.common.timefmt import utc_stamp
from cryospy.functions.api import validate
from cryospy.functions.bucket import Bucket
from cryospy.functions.clips.mp4 import Mp4Error, parse_mp4
from cryospy.functions.devices.registry import Device
from cryospy.functions.errors import BadRequest, BucketError, KeysLocked, ObjectMissing
from cryospy.functions.live.hub import ParsedPart
from cryospy.functions.services import Services
from cryospy.functions.uploads.slots import CONTENT_TYPE, require_signing_key

log = logging.getLogger(__name__)

SLOT_TTL_S = 30
PART_LIFETIME_S = 120        # after its slot was issued, a part object is deleted by the runtime's sweep
MAX_PART_BYTES = 4 * 1024 * 1024
MAX_SLOTS = 8
MAX_WAIT_S = 25.0
BUSY_POLL_S = 1.0            # the answer to a poll that could not wait (every waiting slot taken)


@dataclass(frozen=True)
class PartsRequest:
    uploaded: tuple[str, ...]
    slots: int

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> PartsRequest:
        validate.only_known(doc, {"uploaded", "slots"})
        uploaded = doc.get("uploaded", [])
        if not isinstance(uploaded, list) or len(uploaded) > MAX_SLOTS or \
                not all(isinstance(k, str) and 0 < len(k) <= 200 for k in uploaded):
            raise BadRequest(f"'uploaded' must be a list of at most {MAX_SLOTS} live-part keys", field="uploaded")
        return cls(tuple(uploaded), validate.integer(doc, "slots", 0, MAX_SLOTS, default=0))


def watch_request(query: dict[str, str]) -> tuple[bool, float]:
    """``watching`` (what the agent believes) and ``wait`` (seconds to hold the answer) from the query."""
    watching = query.get("watching", "0")
    if watching not in ("0", "1"):
        raise BadRequest("'watching' must be 0 or 1", field="watching")
    try:
        wait = float(query.get("wait", "20"))
    except ValueError:
        raise BadRequest("'wait' must be a number of seconds", field="wait") from None
    if not 0 <= wait <= MAX_WAIT_S:
        raise BadRequest(f"'wait' must be between 0 and {MAX_WAIT_S:g} seconds", field="wait")
    return watching == "1", wait


def wait_for_viewers(services: Services, device: Device, watching: bool, wait_s: float) -> dict[str, Any]:
    with services.presence.holding(device.device_id):    # a held poll is contact while it is held
        watch, waited = services.live.wait_for_change(device.device_id, watching, wait_s)
    return {"watch": watch} if waited else {"watch": watch, "poll_again_s": BUSY_POLL_S}


def exchange_parts(services: Services, device: Device, req: PartsRequest) -> dict[str, Any]:
    """Check what the agent uploaded, hand it new slots; ``watch`` tells it whether to go on."""
    require_signing_key(device)
    accepted, refused = [], {}
    for key in req.uploaded:
        try:
            parsed = check_part(services, device, key)
        except KeysLocked:      # nobody can watch a locked server: tell the agent to stop
            return {"watch": False, "accepted": accepted, "slots": [],
                    "refused": {**refused, key: "the server is locked; no one can watch until an admin unlocks"}}
        except PartRefused as exc:
            refused[key] = str(exc)
            log.warning("live part %s from %s refused: %s", key, device.device_id, exc)
            continue
        services.live.add_part(device.device_id, parsed)
        accepted.append(key)
    watch = services.live.watched(device.device_id)
    return {"watch": watch, "accepted": accepted, "refused": refused,
            "slots": issue_live_slots(services, device, req.slots if watch else 0)}


def part_owner(device: Device) -> str:
    """What a device's live-part keys and headers name it by: its storage token (no camera name in MinIO)."""
    return device.storage_token or device.device_id


def issue_live_slots(services: Services, device: Device, count: int) -> list[dict[str, Any]]:
    now = services.clock()
    headers = {"Content-Type": CONTENT_TYPE, "If-None-Match": "*"}
    slots = []
    for _ in range(count):
        key = new_live_part_key(part_owner(device), now).key
        url = services.shared_presigner.presign_put(services.bucket, key, headers, SLOT_TTL_S, now)
        slots.append({"method": "PUT", "url": url, "headers": headers, "key": key,
                      "expires_at": utc_stamp(now + timedelta(seconds=SLOT_TTL_S))})
    return slots


class PartRefused(Exception):
    """An uploaded part that is not a genuine, well-formed part of this device (the message says why)."""


def check_part(services: Services, device: Device, key: str) -> ParsedPart:
    try:
        lk = parse_live_part_key(key)
    except ObjectKeyError as exc:
        raise PartRefused(str(exc)) from None
    if lk.owner != part_owner(device):
        raise PartRefused("that key belongs to another device")
    try:
        body = Bucket.of(services).get(key)
    except ObjectMissing:
        raise PartRefused("no such object: upload it first") from None
    size = body.size
    if size > MAX_PART_BYTES:
        body.close()
        _delete(services, key)
        raise PartRefused(f"{size} bytes is more than a live part may hold ({MAX_PART_BYTES})")
    with body:
        sealed = body.read()
    try:
        reader = open_sealed(io.BytesIO(sealed), keyring=services.vault.keys(),
                             signer_public_key=verify_key_from_text(device.signing_key or ""),
                             expected_object_key=key)
        header = reader.header
        if header.content_type != LIVE_CONTENT_TYPE or header.device_id != part_owner(device):
            raise SealedFormatError("not a live part of this device")
        out = io.BytesIO()
        reader.copy_to(out)
        plain = out.getvalue()
        info = parse_mp4(lambda offset, length: plain[offset:offset + length], len(plain))
        if not info.fragments:
            raise Mp4Error("no fragment")
    except KeysLocked:
        raise
    except (SealedFormatError, Mp4Error, ValueError) as exc:
        _delete(services, key)
        raise PartRefused(f"not a genuine live part: {exc}") from None
    first, last = info.fragments[0], info.fragments[-1]
    return ParsedPart(key=key, captured_at=header.captured_at, duration_s=sum(f.duration_s for f in info.fragments),
                      start_s=first.start_s, init_size=info.init_size,
                      init_digest=hashlib.sha256(plain[:info.init_size]).digest(),
                      fragment_offset=first.offset, fragment_size=last.offset + last.size - first.offset,
                      sealed_size=size, codec=info.codec)


def _delete(services: Services, key: str) -> None:
    try:
        Bucket.of(services).delete(key)
    except BucketError:
        log.warning("could not delete refused live part %s; the sweep will", key)
