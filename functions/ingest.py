"""Clip ingest: verify a sealed clip, describe it, and record it in the index.

Idempotent by construction: every output is keyed by the clip's object key, so a replayed event rewrites
the same record. No plaintext touches the disk: the sealed object is spooled to a private temporary file,
and the MP4 parser reads the plaintext through the decrypting range reader.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC
from typing import IO, Any

from botocore.exceptions import ClientError

from cryospy.common.keys import verify_key_from_text
from cryospy.common.objectkeys import ObjectKeyError, parse_clip_key
from cryospy.common.sealed import SealedFormatError, SealedReader, open_sealed

from .errors import NotFound, PermanentEventError
from .events import ObjectEvent
from .mp4 import Mp4Error, parse_mp4
from .services import Services

log = logging.getLogger("cryospy.ingest")


@dataclass(frozen=True)
class IngestResult:
    key: str
    changed: bool


def _download(services: Services, key: str, into: IO[bytes]) -> int:
    try:
        obj = services.handler_client.get_object(Bucket=services.bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            raise PermanentEventError(f"{key} no longer exists (deleted before it was processed)") from None
        raise
    size = 0
    for chunk in obj["Body"].iter_chunks(1 << 20):
        into.write(chunk)
        size += len(chunk)
    into.seek(0)
    return size


def describe(reader: SealedReader) -> dict[str, Any]:
    info = parse_mp4(lambda off, n: reader.read_range(off, min(off + n, reader.plaintext_size)),
                     reader.plaintext_size)
    return {"duration_s": round(info.duration_s, 3), "width": info.width, "height": info.height,
            "fps": info.fps, "codec": info.codec, "fragments": len(info.fragments),
            "init_size": info.init_size}


def ingest_clip(services: Services, event: ObjectEvent) -> IngestResult:
    try:
        ck = parse_clip_key(event.key)
    except ObjectKeyError as exc:
        raise PermanentEventError(f"not a clip key: {exc}") from None
    try:
        device = services.devices.get(ck.device_id)
    except NotFound:
        raise PermanentEventError(f"clip from unknown device {ck.device_id!r}") from None
    keys = services.vault.keys()
    with tempfile.TemporaryFile(prefix="cryospy-sealed-") as spool:
        sealed_size = _download(services, event.key, spool)
        try:
            reader = open_sealed(spool, keyring=keys, signer_public_key=verify_key_from_text(device.signing_key),
                                 expected_object_key=event.key, size=sealed_size)
            reader.verify_length()   # a full pass: the device-signed content trailer must hold
            meta = describe(reader)
        except SealedFormatError as exc:
            raise PermanentEventError(f"sealed clip failed verification: {exc}") from None
        except Mp4Error as exc:
            raise PermanentEventError(f"clip is not a readable MP4: {exc}") from None
        header = reader.header
    if header.device_id != ck.device_id or header.sequence != ck.sequence:
        raise PermanentEventError("sealed header disagrees with its object key (device or sequence)")
    record = {
        "key": event.key, "device_id": ck.device_id, "day": ck.day, "sequence": header.sequence,
        "captured_at": header.captured_at.astimezone(UTC).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"),
        "sealed_size": sealed_size, "plain_size": reader.plaintext_size,
        "header_hash": header.header_hash.hex(), "prev_hash": header.prev_hash.hex(),
        **meta,
    }
    changed = services.index.upsert_clip(record)
    log.info("indexed %s (%s)", event.key, "new" if changed else "unchanged")
    return IngestResult(event.key, changed)
