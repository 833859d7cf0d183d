"""Clip ingest: verify a sealed clip, describe it, make its thumbnail, check its chain, index it.

Idempotent by construction: every output is keyed by the clip's object key (the thumbnail's key is derived
from it, the index upserts by it), so a replayed event rewrites the same things. No plaintext touches the
disk: the sealed object is spooled to a private temporary file, the MP4 parser reads the plaintext through the
decrypting range reader, and the thumbnail is decoded in memory from one decrypted fragment (PyAV).

A clip that fails verification is quarantined (moved under ``quarantine/`` with the reason), never deleted.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from cryospy.common.clipmeta import CLIP_META_UUID, ClipMetaError, decode_meta_payload
from cryospy.common.ffmpeg_tool import FfmpegError
from cryospy.common.keys import verify_key_from_text
from cryospy.common.objectkeys import ClipKey, ObjectKeyError, thumbnail_key
from cryospy.common.sealed import ZERO_HASH, SealedFormatError, SealedReader, open_sealed, seal_bytes
from cryospy.common.timefmt import parse_utc, utc_stamp
from cryospy.functions.bucket import Bucket
from cryospy.functions.clips import chain_check, quarantine
from cryospy.functions.clips.mp4 import Mp4Error, Mp4Info, find_uuid_box, parse_mp4
from cryospy.functions.clips.place import locate
from cryospy.functions.clips.thumbnail import thumbnail_from_fragment
from cryospy.functions.errors import NotFound, ObjectMissing, PermanentEventError
from cryospy.functions.events import ObjectEvent
from cryospy.functions.index.records import ClipRecord
from cryospy.functions.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    key: str
    device_id: str
    changed: bool
    record: ClipRecord


def _download(services: Services, key: str, into: IO[bytes]) -> int:
    try:
        body = Bucket.of(services).get(key)
    except ObjectMissing:
        raise PermanentEventError(f"{key} no longer exists (deleted before it was processed)") from None
    size = 0
    with body:
        for chunk in body.iter_chunks(1 << 20):
            into.write(chunk)
            size += len(chunk)
    into.seek(0)
    return size


def _read_at(reader: SealedReader):  # type: ignore[no-untyped-def]
    return lambda off, n: reader.read_range(off, min(off + n, reader.plaintext_size))


def _clip_meta(reader: SealedReader) -> dict[str, Any]:
    payload = find_uuid_box(_read_at(reader), reader.plaintext_size, CLIP_META_UUID)
    if payload is None:
        return {}
    try:
        return decode_meta_payload(payload)
    except ClipMetaError as exc:
        log.warning("ignoring unreadable clip metadata: %s", exc)
        return {}


def _thumbnail(reader: SealedReader, info: Mp4Info, at_s: float) -> bytes | None:
    if not info.fragments:
        return None
    at_s = min(max(0.0, at_s), info.duration_s)
    fragment = next((f for f in reversed(info.fragments) if f.keyframe and f.start_s <= at_s), info.fragments[0])
    init = reader.read_range(0, info.init_size)
    body = reader.read_range(fragment.offset, fragment.offset + fragment.size)
    try:
        return thumbnail_from_fragment(init, body, offset_s=at_s - fragment.start_s)
    except FfmpegError as exc:
        log.warning("no thumbnail: %s", exc)
        return None


def _store_thumbnail(services: Services, ck: ClipKey, jpeg: bytes) -> tuple[str, int]:
    keys = services.vault.keys()
    key = thumbnail_key(ck.key)
    sealed, _ = seal_bytes(jpeg, object_key=key, device_id="server", sequence=0, captured_at=ck.captured_at,
                           content_type="image/jpeg", prev_hash=ZERO_HASH, recipient=keys.current_public_key,
                           signer=keys.server_signing_key)
    Bucket.of(services).put(key, sealed, ContentType="application/octet-stream")
    return key, len(sealed)


def describe(info: Mp4Info, meta: dict[str, Any]) -> dict[str, Any]:
    motion = meta.get("motion") if isinstance(meta.get("motion"), dict) else {}
    return {
        "duration_s": round(info.duration_s, 3), "width": info.width, "height": info.height, "fps": info.fps,
        "codec": info.codec, "init_size": info.init_size,
        "fragments": [[f.offset, f.size, round(f.start_s, 3), round(f.duration_s, 3)] for f in info.fragments],
        "motion": bool(motion.get("motion", False)), "motion_score": float(motion.get("score", 0.0) or 0.0),
        "motion_intervals": [[i.get("start_s"), i.get("end_s")] for i in motion.get("intervals", [])
                             if isinstance(i, dict)],
        "peak_s": motion.get("peak_s"),
        "agent": {k: meta[k] for k in ("agent_version", "settings_etag") if k in meta},
        "motion_error": bool(meta.get("motion_error", False)),
        "audio_codec": info.audio_codec,
        "record_mode": meta["record_mode"] if meta.get("record_mode") in ("passthrough", "transcode") else None,
        "source_gap": _source_gap(meta.get("source_gap")),
    }


def _source_gap(raw: Any) -> dict[str, str] | None:
    """The camera-outage note the agent seals into the first clip after an outage, checked (a camera's
    metadata is signed, not trusted): two UTC times in order and a short reason, or nothing."""
    if not isinstance(raw, dict):
        return None
    try:
        start, end = parse_utc(str(raw["from"])[:40]), parse_utc(str(raw["to"])[:40])
    except (KeyError, ValueError):
        return None
    if not start <= end:
        return None
    reason = raw.get("reason")
    return {"from": utc_stamp(start), "to": utc_stamp(end),
            "reason": reason[:200] if isinstance(reason, str) else ""}


def ingest_clip(services: Services, event: ObjectEvent) -> IngestResult:
    try:
        place = locate(services.devices, event.key)
    except ObjectKeyError as exc:
        quarantine.quarantine(services, event.key, f"not a clip key: {exc}")
        raise PermanentEventError(f"quarantined {event.key}: not a clip key ({exc})") from None
    except NotFound:
        quarantine.quarantine(services, event.key, "no enrolled device owns this key")
        raise PermanentEventError(f"quarantined {event.key}: no enrolled device owns this key") from None
    ck, device = place.clip, place.device
    device_id = device.device_id
    if not device.enabled:
        # The reason goes into the bucket (object metadata): it must not name the camera.
        quarantine.quarantine(services, event.key, "its device is disabled or removed")
        raise PermanentEventError(f"quarantined {event.key}: device {device_id!r} is disabled or removed")
    if not device.signing_key:
        # Slots are refused until the key is registered, so this needs a hand-made upload. Not quarantined:
        # once the device has registered its key, `cryospy events retry` verifies the clip against it.
        raise PermanentEventError(f"cannot verify {event.key}: device {device_id!r} has not registered its "
                                  "signing key yet; start its agent, then run `cryospy events retry`")
    keys = services.vault.keys()
    with tempfile.TemporaryFile(prefix="cryospy-sealed-") as spool:
        sealed_size = _download(services, event.key, spool)
        try:
            reader = open_sealed(spool, keyring=keys, signer_public_key=verify_key_from_text(device.signing_key),
                                 expected_object_key=event.key, size=sealed_size)
            reader.verify_length()   # a full pass: the device-signed content trailer must hold
            info = parse_mp4(_read_at(reader), reader.plaintext_size)
            meta = _clip_meta(reader)
        except (SealedFormatError, Mp4Error) as exc:
            reason = f"sealed clip failed verification: {exc}"
            quarantine.quarantine(services, event.key, reason)
            services.alerts.tampering(device_id, event.key, reason)
            raise PermanentEventError(f"quarantined {event.key}: {reason}") from None
        header = reader.header
        # The header names the device as its key does: by storage token (by name in a legacy key).
        if header.device_id != ck.owner or header.sequence != ck.sequence:
            quarantine.quarantine(services, event.key, "sealed header disagrees with its object key")
            raise PermanentEventError(f"quarantined {event.key}: header disagrees with its object key")
        described = describe(info, meta)
        existing = services.index.get_clip(device_id, ck.day, event.key)
        done_before = bool(existing and existing.header_hash == header.header_hash.hex() and existing.thumb_key)
        jpeg = None
        if not done_before:
            peak = described["peak_s"] if isinstance(described["peak_s"], int | float) else 1.0
            jpeg = _thumbnail(reader, info, float(peak))
    if done_before and existing is not None:
        # A replayed event: the thumbnail exists already; re-sealing it would only churn the bucket.
        thumb_key, thumb_size = existing.thumb_key, existing.thumb_size
    else:
        thumb_key, thumb_size = _store_thumbnail(services, ck, jpeg) if jpeg else (None, 0)
    fields = {
        "key": event.key, "device_id": device_id, "day": ck.day, "sequence": header.sequence,
        "captured_at": utc_stamp(header.captured_at),
        "sealed_size": sealed_size, "plain_size": reader.plaintext_size,
        "header_hash": header.header_hash.hex(), "prev_hash": header.prev_hash.hex(),
        "thumb_key": thumb_key, "thumb_size": thumb_size,
        "indexed_at": existing.indexed_at if existing and existing.indexed_at
        else datetime.now(UTC).isoformat(timespec="seconds"),
        **described,
    }
    # What the index knows beyond this clip's content (protection, a deletion under way) stays as it was.
    record = ClipRecord.from_doc({**(existing.to_doc() if existing else {}), **fields})
    if existing and existing.missing:
        # A tombstone whose object is there after all (a forged removal event): the clip is footage again.
        record = record.changed(missing=False, missing_since=None)
        log.warning("%s is in the bucket again; its tombstone is lifted", event.key)
    record = record.changed(chain=chain_check.link(services, record))
    changed = services.index.upsert_clip(record)
    chain_check.relink_successor(services, record)
    if changed and existing is None and record.motion:
        services.alerts.motion(device_id, record, jpeg)
    log.info("indexed %s (%s)", event.key, "new" if existing is None else "unchanged" if not changed else "updated")
    return IngestResult(event.key, device_id, changed, record)
