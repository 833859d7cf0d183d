"""Evidence export, the domain side: which clips a request covers, checking and hashing them, the manifest.

An export reads the same sealed objects from MinIO twice, and writes nothing to disk either time:

1. the *check* pass (:func:`check_clip`, run by a background job): each object is fetched once and opened with the
   device's registered key — header signature, storage key, every chunk, the device-signed content trailer — while
   SHA-256 is taken of the sealed bytes and of the decrypted MP4. The results make the manifest
   (:func:`build_manifest`), which is fixed before the download starts;
2. the *download* pass (:mod:`.export_zip`) fetches them again into the zip and aborts if any byte differs from what
   the check pass hashed, so a zip never contradicts its own manifest.

The manifest is written by the server, so it cannot vouch for the device keys it carries; ``VERIFY.txt`` tells the
reader to compare each key's fingerprint with one recorded outside the server (``docs/sealed-format.md`` §7).

Exceptions::

    CryoSpyError
    ├── ExportFailed            a clip could not be fetched or did not verify; the export stops with the reason
    │   └── ExportChanged       a sealed object changed between the check and the download: the zip is abandoned
    └── functions.errors.BadRequest (field=device|start|end)   a request the form must correct
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cryospy.common.chain import ChainProblem, verify_chain
from cryospy.common.errors import CryoSpyError
from cryospy.common.evidence import explain_gaps
from cryospy.common.keys import KeyRing, verify_key_fingerprint, verify_key_to_text
from cryospy.common.objectkeys import parse_clip_key
from cryospy.common.sealed import SealedFormatError, SealedHeader, open_sealed
from cryospy.common.timefmt import parse_utc, utc_stamp
from cryospy.functions.errors import BadRequest, BucketError
from cryospy.functions.index.protocol import ClipIndex
from cryospy.functions.index.records import ClipRecord

MAX_RANGE = timedelta(days=7)
MANIFEST_FORMAT = "cryospy-export-v2"   # v2: devices keyed by the id clips are signed as (the storage token)
READ_SIZE = 1 << 20

# Fetch a whole sealed object from storage: key -> readable stream (closed by the caller).
Fetch = Callable[[str], BinaryIO]


class ExportFailed(CryoSpyError):
    """An export could not be checked or streamed (MinIO unreachable, a clip that does not open)."""


class ExportChanged(ExportFailed):
    """A clip changed between the check and the download: the zip would contradict its manifest."""


@dataclass(frozen=True)
class ExportRequest:
    """One camera, a half-open UTC range [start, end), optionally only the clips with motion."""

    device_id: str
    start: datetime
    end: datetime
    motion_only: bool = False


@dataclass(frozen=True)
class Selection:
    """The index records an export covers, by capture time, and those in range that the motion filter left out."""

    request: ExportRequest
    clips: list[ClipRecord]
    left_out: list[ClipRecord]
    deleted: list[ClipRecord] = field(default_factory=list)   # tombstones: deleted outside CryoSpy


@dataclass(frozen=True)
class CheckedClip:
    """A clip as the check pass found it: the authenticated header and the hashes the download must reproduce."""

    record: ClipRecord
    header: SealedHeader
    sealed_sha256: str
    video_sha256: str
    video_size: int

    @property
    def sealed_path(self) -> str:
        return "sealed/" + self.record.key

    @property
    def video_path(self) -> str:
        stamp = self.record.captured_at.replace(":", "-")
        return f"video/{self.record.device_id}_{stamp}.mp4"


def parse_request(form: Mapping[str, str], known_devices: Iterable[str]) -> ExportRequest:
    """Validate the form: a known camera, two UTC times (export.js converts the pickers), start < end, ≤ 7 days."""
    device = form.get("device", "").strip()
    if device not in set(known_devices):
        raise BadRequest("Choose a camera from the list.", field="device")
    start, end = _parse_time(form.get("start", ""), "start"), _parse_time(form.get("end", ""), "end")
    if end <= start:
        raise BadRequest("The end must be after the start.", field="end")
    if end - start > MAX_RANGE:
        raise BadRequest("An export covers at most 7 days; pick a shorter range or make several exports.",
                         field="end")
    return ExportRequest(device, start, end, form.get("motion_only") in ("1", "on", "true"))


def _parse_time(text: str, field: str) -> datetime:
    if not text.strip():
        raise BadRequest(f"Pick the {field} date and time.", field=field)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{text[:40]!r} is not a date and time; pick one with the date picker.", field=field) from None
    if moment.tzinfo is None:
        raise BadRequest(f"The {field} time has no time zone; reload the page so it is sent as UTC.", field=field)
    return moment.astimezone(UTC)


def instant(stamp: str) -> datetime:
    return parse_utc(stamp).astimezone(UTC)


def utc_text(moment: datetime) -> str:
    return utc_stamp(moment)


def select_clips(index: ClipIndex, request: ExportRequest) -> Selection:
    """The clips of the request's camera that began in [start, end), from the index's day shards the range touches.

    Raises BadRequest (field ``start``) when there is nothing to export, so the form can say so."""
    records: list[ClipRecord] = []
    day = request.start.date()
    while day <= request.end.date():
        for record in index.clips_for_day(request.device_id, day.isoformat()):
            if request.start <= instant(record.captured_at) < request.end:
                records.append(record)
        day += timedelta(days=1)
    records.sort(key=lambda r: (instant(r.captured_at), r.sequence))
    deleted = [r for r in records if r.missing]   # nothing to fetch; the chain check reports the gap
    records = [r for r in records if not r.missing]
    clips = [r for r in records if r.motion] if request.motion_only else records
    left_out = [r for r in records if not r.motion] if request.motion_only else []
    if not clips:
        what = "clips with motion" if request.motion_only else "clips"
        raise BadRequest(f"{request.device_id} has no {what} between {utc_text(request.start)} and "
                         f"{utc_text(request.end)} (UTC); widen the range.", field="start")
    return Selection(request, clips, left_out, deleted)


class HashingReader:
    """A read-only stream that hashes and counts what passes through it (the sealed bytes as fetched)."""

    def __init__(self, src: BinaryIO):
        self._src = src
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._src.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def fetch_error(key: str, exc: Exception) -> ExportFailed:
    return ExportFailed(f"clip {key} could not be read from storage ({exc}); it may have been deleted by "
                        "retention meanwhile — start the export again")


def check_clip(fetch: Fetch, record: ClipRecord, keyring: KeyRing, signer: Ed25519PublicKey,
               on_bytes: Callable[[int], None] = lambda n: None) -> CheckedClip:
    """Open one clip completely with the device's key, hashing its sealed bytes and its MP4 on the way.

    The full read checks the header signature, the storage key, every chunk and the device-signed content trailer, so
    a clip that passes is byte for byte what the camera sealed (provided ``signer`` really is the camera's key)."""
    key = record.key
    try:
        body = fetch(key)
    except BucketError as exc:
        raise fetch_error(key, exc) from exc
    try:
        sealed = HashingReader(body)
        video, video_size = hashlib.sha256(), 0
        reader = open_sealed(sealed, keyring=keyring, signer_public_key=signer, expected_object_key=key,
                             size=record.sealed_size)
        for piece in reader.iter_plaintext():
            video.update(piece)
            video_size += len(piece)
            on_bytes(len(piece))
        if sealed.read(1):
            raise SealedFormatError(f"{key} is longer than the {record.sealed_size} bytes it was indexed with")
    except SealedFormatError as exc:
        raise ExportFailed(f"clip {key} does not verify against the key of {record.device_id}: {exc}. "
                           "Run `cryospy verify` on the bucket to see what else is affected") from exc
    except (BucketError, OSError) as exc:
        raise fetch_error(key, exc) from exc
    finally:
        body.close()
    return CheckedClip(record, reader.header, sealed.sha256.hexdigest(), video.hexdigest(), video_size)


def build_manifest(selection: Selection, checked: list[CheckedClip], signer: Ed25519PublicKey,
                   deployment_key: Any, requested_by: dict[str, str], now: datetime) -> dict[str, Any]:
    """The export's manifest: what was asked, by whom, the keys to check against, every clip with its hashes and
    chain position, the clips left out on purpose, and every chain finding in the range."""
    request = selection.request
    device = request.device_id
    headers = [(c.sealed_path, c.header) for c in checked]
    # Clips are signed as the device's storage token (legacy clips as its name): one key under every id in use.
    signed_as = sorted({h.device_id for _, h in headers} | {_signed_as(r) for r in selection.left_out})
    left_out: dict[str, set[int]] = {}
    for r in selection.left_out:
        left_out.setdefault(_signed_as(r), set()).add(r.sequence)
    findings, _ = explain_gaps(verify_chain(headers, dict.fromkeys(signed_as, signer)), headers, left_out)
    # The index's own verdicts name breaks the range alone cannot show (the first clip's predecessor missing).
    for c in checked:
        if c.record.chain in ("gap", "broken-link"):
            findings.append(_index_finding(c.record.chain, c.sealed_path, c.record.sequence, device))
    return {
        "format": MANIFEST_FORMAT,
        "exported_at": utc_text(now),
        "requested_by": requested_by,
        "range": {"device_id": device, "start": utc_text(request.start), "end": utc_text(request.end),
                  "motion_only": request.motion_only},
        "deployment": {"key_id": deployment_key.key_id, "public_key": deployment_key.to_text()},
        "devices": {owner: {"camera": device, "verify_key": verify_key_to_text(signer),
                            "fingerprint": verify_key_fingerprint(signer),
                            "source": "the server's device registry: compare the fingerprint with your own record"}
                    for owner in signed_as},
        "clips": [_clip_entry(c) for c in checked],
        "left_out": [{"device_id": r.device_id, "signed_as": _signed_as(r), "sequence": r.sequence,
                      "object_key": r.key,
                      "captured_at": r.captured_at, "reason": "no motion"} for r in selection.left_out],
        "deleted_outside_cryospy": [{"device_id": r.device_id, "sequence": r.sequence, "object_key": r.key,
                                     "captured_at": r.captured_at, "missing_since": r.missing_since}
                                    for r in selection.deleted],
        "gaps": [{"kind": f.kind, "where": f.where, "device_id": f.device_id, "sequence": f.sequence,
                  "detail": f.detail} for f in findings],
    }


def _signed_as(record: ClipRecord) -> str:
    """The device id a clip's header carries: the owner segment of its key (token, or the name if legacy)."""
    return parse_clip_key(record.key).owner


def _index_finding(kind: str, where: str, sequence: int, device_id: str) -> ChainProblem:
    if kind == "gap":
        detail = (f"the clip before clip {sequence} of device {device_id!r} never reached the server: footage just "
                  "before this clip is missing")
    else:
        detail = (f"clip {sequence} of device {device_id!r} does not chain to the clip the server holds before it: "
                  "one of them was replaced")
    return ChainProblem(kind, where, detail, device_id, sequence)


def _clip_entry(c: CheckedClip) -> dict[str, Any]:
    r = c.record
    return {
        "device_id": r.device_id, "signed_as": c.header.device_id, "object_key": r.key,
        "captured_at": r.captured_at,
        "sequence": r.sequence, "duration_s": r.duration_s, "motion": r.motion,
        "sealed": c.sealed_path, "sealed_size": r.sealed_size, "sealed_sha256": c.sealed_sha256,
        "video": c.video_path, "video_size": c.video_size, "video_sha256": c.video_sha256,
        "chain": {"sequence": c.header.sequence, "header_hash": c.header.header_hash.hex(),
                  "prev_hash": c.header.prev_hash.hex(), "server_verdict": r.chain},
    }
