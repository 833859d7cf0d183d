"""The export's zip, streamed: written piece by piece into a small buffer that the WSGI body hands out as it fills.

Nothing is built on disk or held whole in memory: ``zipfile`` writes to :class:`ChunkSink` (not seekable, so each
entry ends with a data descriptor) and the generator yields what it holds after every piece, about 1 MiB at most.
Layout of the archive::

    manifest.json                  what the check pass found (export_bundle.build_manifest)
    audit/audit.log, entries.json  the audit log, sealed and chained, with each entry's key (docs/audit.md)
    VERIFY.txt                     how to check the export without trusting this server
    sealed/clips/<device>/…/*.cse  the sealed objects, byte for byte as stored
    video/<device>_<time>.mp4      the same clips decrypted, for viewing

Each sealed object and each MP4 is hashed again while it streams; a hash that differs from the manifest raises
:class:`~.export_bundle.ExportChanged` before the archive's central directory is written, so the client is left
with a broken download rather than a zip that contradicts its manifest.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cryospy.common.keys import KeyRing
from cryospy.common.sealed import SealedFormatError, open_sealed
from cryospy.functions.errors import BucketError

from .export_bundle import READ_SIZE, CheckedClip, ExportChanged, Fetch, HashingReader, fetch_error, instant


class ChunkSink:
    """A write-only file for ``zipfile``: keeps what was written until :meth:`drain` hands it out."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes | memoryview) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """zipfile calls it; what was written waits in memory for :meth:`drain`, so there is nothing to do."""

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def stream_zip(manifest: dict[str, Any], clips: list[CheckedClip], fetch: Fetch, keyring: KeyRing,
               signer: Ed25519PublicKey, extra: dict[str, bytes] | None = None) -> Iterator[bytes]:
    """The export as zip bytes, yielded as they are produced; raises ExportChanged/ExportFailed mid-stream.
    ``extra`` are small files written after the manifest (the audit log: functions/audit/log.export_files)."""
    sink = ChunkSink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        _small(archive, "manifest.json", json.dumps(manifest, indent=2).encode(), instant(manifest["exported_at"]))
        _small(archive, "VERIFY.txt", verify_text(manifest).encode(), instant(manifest["exported_at"]))
        for name, data in (extra or {}).items():
            _small(archive, name, data, instant(manifest["exported_at"]))
        yield sink.drain()
        for clip in clips:
            yield from _sealed_entry(archive, sink, clip, fetch)
            yield from _video_entry(archive, sink, clip, fetch, keyring, signer)
    yield sink.drain()


def _info(name: str, when: datetime, size: int, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type, info.file_size, info.external_attr = compress, size, 0o644 << 16
    return info


def _small(archive: zipfile.ZipFile, name: str, data: bytes, when: datetime) -> None:
    archive.writestr(_info(name, when, len(data), zipfile.ZIP_DEFLATED), data)


def _sealed_entry(archive: zipfile.ZipFile, sink: ChunkSink, clip: CheckedClip, fetch: Fetch) -> Iterator[bytes]:
    key = clip.record.key
    when = instant(clip.record.captured_at)
    try:
        body = HashingReader(fetch(key))
        with archive.open(_info(clip.sealed_path, when, clip.record.sealed_size, zipfile.ZIP_STORED), "w") as out:
            while piece := body.read(READ_SIZE):
                out.write(piece)
                yield sink.drain()
    except (BucketError, OSError) as exc:
        raise fetch_error(key, exc) from exc
    if body.sha256.hexdigest() != clip.sealed_sha256:
        raise ExportChanged(f"clip {key} changed in storage after it was checked (SHA-256 {body.sha256.hexdigest()} "
                            f"instead of {clip.sealed_sha256}); the download was stopped — start a new export and "
                            "run `cryospy verify` on the bucket")


def _video_entry(archive: zipfile.ZipFile, sink: ChunkSink, clip: CheckedClip, fetch: Fetch, keyring: KeyRing,
                 signer: Ed25519PublicKey) -> Iterator[bytes]:
    key = clip.record.key
    digest = hashlib.sha256()
    try:
        body = fetch(key)
        reader = open_sealed(body, keyring=keyring, signer_public_key=signer, expected_object_key=key,
                             size=clip.record.sealed_size)
        info = _info(clip.video_path, instant(clip.record.captured_at), clip.video_size, zipfile.ZIP_STORED)
        with archive.open(info, "w") as out:
            for piece in reader.iter_plaintext():     # the trailer is checked after the last piece
                digest.update(piece)
                out.write(piece)
                yield sink.drain()
    except SealedFormatError as exc:
        raise ExportChanged(f"clip {key} no longer verifies ({exc}); the download was stopped — start a new "
                            "export and run `cryospy verify` on the bucket") from exc
    except (BucketError, OSError) as exc:
        raise fetch_error(key, exc) from exc
    if digest.hexdigest() != clip.video_sha256:
        raise ExportChanged(f"the video of clip {key} changed after it was checked; the download was stopped — "
                            "start a new export")


def verify_text(manifest: dict[str, Any]) -> str:
    """VERIFY.txt: the steps an outsider takes to check this export, trusting nothing this server says."""
    span = manifest["range"]
    keys = "\n".join(f"    {device}: fingerprint {d['fingerprint']}\n      verify key {d['verify_key']}"
                     for device, d in manifest["devices"].items())
    left_out = (f"\nThis export was limited to clips with motion; {len(manifest['left_out'])} clip(s) without motion "
                "were left out on purpose and are listed under left_out in manifest.json.\n"
                if manifest["left_out"] else "")
    gaps = ("\nThe server found these breaks in the chain while exporting:\n"
            + "\n".join(f"  - {g['kind']}: {g['detail']}" for g in manifest["gaps"]) + "\n"
            if manifest["gaps"] else "")
    return f"""\
CryoSpy evidence export
=======================

Camera {span['device_id']}, clips that began from {span['start']} to {span['end']} (UTC).
Exported {manifest['exported_at']}: {len(manifest['clips'])} clip(s).
{left_out}{gaps}
What is in this folder
  sealed/     the clips exactly as the camera sealed and signed them (encrypted; these are the evidence)
  video/      the same clips decrypted, to watch (MP4)
  manifest.json   every clip with its SHA-256, sequence number and chain links, and the camera's public key

How to check it (on any computer; no password or private key is needed)

1. Check the camera's key, OUTSIDE this server.
   This export, including manifest.json, was written by the CryoSpy server. A server that was broken into
   could have put a key of its own in the manifest and re-signed the clips with it. So compare the
   fingerprint below with the fingerprint recorded when the camera was enrolled (logged by the camera's
   agent, or noted by its owner) - not with anything this server or its dashboard shows:

{keys}

   If they differ, stop: the export cannot be trusted. If you hold the camera's verify key yourself, put
   it in a file devices.json, {{"devices": {{"{span['device_id']}": "cs1-ed25519-pub:..."}}}}, and add
   --devices devices.json to the command in step 2; then the manifest's keys are not used at all.

2. Unzip the export into a folder and run the CryoSpy command-line tool on it:

     cryospy verify path/to/unzipped-folder

   It prints the fingerprint of every key it used, then checks:
   - every sealed clip's header and content signatures against the camera's key;
   - the chain: sequence numbers without gaps, in order, each clip linked to the one before it;
   - every file against manifest.json: SHA-256 of each sealed clip and each MP4, nothing missing or added;
   - the audit log in audit/: every entry chained to the one before, the server's signatures, and each
     readable entry in entries.json against its sealed copy (it prints the server key's fingerprint).
   It ends with "VERIFIED" and exit code 0 only when everything holds; otherwise it names each file at fault
   and ends with "NOT VERIFIED" (exit code 6).

3. Watch the MP4 files in video/. Their SHA-256 matches manifest.json (step 2 checked it), and the sealed
   clips prove what the camera recorded.

Limits (see docs/sealed-format.md, section 7): signatures prove what is here, not that nothing is missing
after the last clip of the range; capture times come from the camera's clock; a clip the server left out
of the range would be missing from this export without a trace unless it breaks the chain inside it.
"""
