"""``cryospy verify PATH``: check sealed clips offline, with no decryption key.

PATH is one sealed file or a folder (an evidence export, or any copy of the bucket's ``clips/``). The
devices' public verify keys come from ``--devices FILE`` or the folder's ``manifest.json`` (``{"devices":
{"<id>": "cs1-ed25519-pub:…"}}``, or ``{"<id>": {"verify_key": "cs1-ed25519-pub:…", …}}`` as exports write it).
For every clip the header signature and the device-signed content trailer are checked; then each device's chain:
sequence gaps (with the time span missing), reordering, replays, broken links. The fingerprint of every key used is
printed: compare it with the one recorded at enrolment, because a manifest comes from the server that exported it.

A folder whose ``manifest.json`` lists clips (a dashboard export) is also checked against that list: every listed
sealed file and MP4 must be present with the SHA-256 the manifest gives, nothing unlisted may be there, and the
sequence each entry names must be the one its device signed. Clips the export left out on purpose (``left_out``:
"only clips with motion") explain the chain gaps they cause; those are printed as notes, not problems. An export's
``audit/`` folder (the audit log) is checked too (:mod:`.verify_audit`). The verdict is printed last; the exit
code is 0 only when everything holds.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cryospy.cli.verify_audit import report, verify_audit
from cryospy.common.chain import ChainProblem, verify_chain
from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import verify_key_fingerprint, verify_key_from_text
from cryospy.common.sealed import (
    SealedFormatError,
    SealedHeader,
    read_header,
    verify_content,
    verify_header_signature,
)

SUFFIX = ".cse"
MANIFEST = "manifest.json"


class VerifyUsageError(CryoSpyError):
    exit_code = 2


@dataclass(frozen=True)
class Verdict:
    clips: int
    devices: int
    problems: list[ChainProblem]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.clips > 0


@dataclass(frozen=True)
class ExportListing:
    """What an export's manifest promises: its clips (sealed file, MP4, their hashes) and the clips it left out."""

    clips: list[dict[str, Any]]
    left_out: dict[str, set[int]]

    @classmethod
    def load(cls, path: Path) -> ExportListing | None:
        """The listing in an export's manifest, or None for a plain key file (no ``clips``)."""
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise VerifyUsageError(f"cannot read {path}: {exc}") from None
        if not isinstance(doc, dict) or "clips" not in doc:
            return None
        clips, left = doc.get("clips"), doc.get("left_out", [])
        if not isinstance(clips, list) or not isinstance(left, list) or not all(
                isinstance(c, dict) for c in [*clips, *left]):
            raise VerifyUsageError(f"{path}: 'clips' and 'left_out' must be lists of objects; the manifest is "
                                   "damaged — take it again from the export zip")
        left_out: dict[str, set[int]] = {}
        for entry in left:
            sequence = entry.get("sequence")
            if not isinstance(sequence, int):
                raise VerifyUsageError(f"{path}: every left_out entry needs an integer 'sequence'; the manifest is "
                                       "damaged — take it again from the export zip")
            left_out.setdefault(str(entry.get("signed_as", entry.get("device_id"))), set()).add(sequence)
        return cls(clips, left_out)

    def check(self, base: Path, found: dict[str, SealedHeader], cse_files: Iterable[str]) -> list[ChainProblem]:
        """Files against the listing: missing, changed (SHA-256), unlisted, or naming another sequence."""
        problems: list[ChainProblem] = []
        listed: set[str] = set()
        for entry in self.clips:
            for role in ("sealed", "video"):
                where, digest = str(entry.get(role, "")), str(entry.get(f"{role}_sha256", ""))
                listed.add(where)
                problems += _check_file(base, where, digest, role)
            header = found.get(str(entry.get("sealed", "")))
            # v2 manifests name the id the clip is signed as (its storage token) apart from the camera's name.
            signed_as = entry.get("signed_as", entry.get("device_id"))
            if header is not None and (header.device_id, header.sequence) != (signed_as, entry.get("sequence")):
                problems.append(ChainProblem(
                    "manifest-mismatch", str(entry.get("sealed")),
                    f"the manifest calls this clip {entry.get('sequence')} of device {signed_as!r}, "
                    f"but it is signed as clip {header.sequence} of {header.device_id!r}: the manifest was edited",
                    header.device_id, header.sequence))
        videos = sorted(str(p.relative_to(base)) for p in (base / "video").rglob("*") if p.is_file()) \
            if (base / "video").is_dir() else []
        for where in [*cse_files, *videos]:
            if where not in listed:
                problems.append(ChainProblem("unlisted", where, "this file is not in the export's manifest: it was "
                                             "added after the export; do not rely on it"))
        return problems

    def explain_gaps(self, problems: list[ChainProblem], headers: list[tuple[str, SealedHeader]],
                     ) -> tuple[list[ChainProblem], list[str]]:
        """Split gaps made only by clips the export left out on purpose (notes) from real gaps (problems)."""
        return explain_gaps(problems, headers, self.left_out)


def explain_gaps(problems: list[ChainProblem], headers: Iterable[tuple[str, SealedHeader]],
                 left_out: dict[str, set[int]]) -> tuple[list[ChainProblem], list[str]]:
    """Gaps whose every missing sequence is in ``left_out`` (device id -> sequences) become notes."""
    present: dict[str, list[int]] = {}
    for _, header in headers:
        present.setdefault(header.device_id, []).append(header.sequence)
    kept: list[ChainProblem] = []
    notes: list[str] = []
    for problem in problems:
        if problem.kind == "gap" and problem.sequence is not None:
            following = [s for s in present.get(problem.device_id, []) if s > problem.sequence]
            missing = range(problem.sequence, min(following)) if following else range(0)
            if missing and all(s in left_out.get(problem.device_id, set()) for s in missing):
                first, last = missing[0], missing[-1]
                which = f"clip {first}" if first == last else f"clips {first}–{last}"
                notes.append(f"{which} of device {problem.device_id!r} left out of this export on purpose "
                             "(see left_out in the manifest), not lost")
                continue
        kept.append(problem)
    return kept, notes


def _check_file(base: Path, where: str, digest: str, role: str) -> list[ChainProblem]:
    path = (base / where).resolve()
    if not where or not path.is_relative_to(base.resolve()):
        return [ChainProblem("manifest-mismatch", where or "manifest.json",
                             f"the manifest names a {role} file outside the export folder: it was edited")]
    if not path.is_file():
        return [ChainProblem("missing", where, f"the manifest lists this {role} file but it is not in the folder: "
                             "unzip the export again, or ask for a new one")]
    with open(path, "rb") as fh:
        actual = hashlib.file_digest(fh, "sha256").hexdigest()
    if actual != digest:
        return [ChainProblem("hash-mismatch", where, f"SHA-256 {actual} differs from the manifest's {digest or '?'}: "
                             "this file (or the manifest) changed after the export")]
    return []


def load_device_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VerifyUsageError(f"cannot read device keys from {path}: {exc}") from None
    devices = doc.get("devices", doc) if isinstance(doc, dict) else None
    if not isinstance(devices, dict):
        raise VerifyUsageError(f"{path} must map device ids to verify keys, e.g. "
                               '{"devices": {"porch": "cs1-ed25519-pub:…"}}')
    try:
        return {str(k): verify_key_from_text(v["verify_key"] if isinstance(v, dict) else v)
                for k, v in devices.items()}
    except (CryoSpyError, KeyError, TypeError) as exc:
        raise VerifyUsageError(f"{path}: {exc}") from None


def camera_names(path: Path) -> dict[str, str]:
    """Storage token -> camera name, from the ``camera`` field an export's manifest gives each device entry."""
    doc = json.loads(path.read_text())
    devices = doc.get("devices", doc) if isinstance(doc, dict) else {}
    return {str(k): str(v["camera"]) for k, v in devices.items() if isinstance(v, dict) and "camera" in v}


def _signature_holds(header: SealedHeader, key: Ed25519PublicKey) -> bool:
    try:
        verify_header_signature(header, key)
    except SealedFormatError:
        return False
    return True


def find_clips(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob(f"*{SUFFIX}") if p.is_file())
    raise VerifyUsageError(f"{path} does not exist")


def verify_path(path: Path, device_keys: dict[str, Ed25519PublicKey],
                progress: Callable[[int, int], None] = lambda done, total: None,
                listing: ExportListing | None = None) -> Verdict:
    clips = find_clips(path)
    base = path if path.is_dir() else path.parent
    headers: list[tuple[str, SealedHeader]] = []
    problems: list[ChainProblem] = []
    for i, clip in enumerate(clips, 1):
        where = str(clip.relative_to(base))
        signed = False
        try:
            with open(clip, "rb") as fh:
                header = read_header(fh)
                key = device_keys.get(header.device_id)
                signed = key is not None and _signature_holds(header, key)
                if signed:
                    # The header is the device's; now the content must be too (the signed trailer).
                    fh.seek(0)
                    verify_content(fh, signer_public_key=key, size=clip.stat().st_size)
        except SealedFormatError as exc:
            problems.append(ChainProblem("unreadable" if not signed else "tampered", where, str(exc)))
        else:
            # Headers whose signature fails go to verify_chain too: it names them (bad-signature, wrong-device).
            headers.append((where, header))
        progress(i, len(clips))
    problems += verify_chain(headers, device_keys)
    notes: list[str] = []
    if listing is not None:
        problems, notes = listing.explain_gaps(problems, headers)
        problems += listing.check(base, dict(headers), [str(c.relative_to(base)) for c in clips])
    return Verdict(len(clips), len({h.device_id for _, h in headers}), problems, notes)


def run(path: Path, devices_file: Path | None) -> int:
    manifest = (path if path.is_dir() else path.parent) / MANIFEST
    if devices_file is None:
        if not manifest.exists():
            raise VerifyUsageError("no device keys: pass --devices FILE, or verify a folder with a manifest.json "
                                   "(exports include one)")
        devices_file = manifest
    keys = load_device_keys(devices_file)
    cameras = camera_names(devices_file)
    listing = ExportListing.load(manifest) if path.is_dir() and manifest.exists() else None
    for device_id, key in sorted(keys.items()):
        camera = f" (camera {cameras[device_id]!r})" if cameras.get(device_id, device_id) != device_id else ""
        print(f"KEY {device_id}{camera}: fingerprint {verify_key_fingerprint(key)} (from {devices_file.name}); it "
              "must match the fingerprint recorded when the camera was enrolled")
    started = last = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if total > 20 and (now - last > 1.0 or done == total):
            print(f"  checked {done}/{total} clips ({now - started:.0f}s)", file=sys.stderr, flush=True)
            last = now

    verdict = verify_path(path, keys, progress, listing)
    audit = verify_audit(path) if path.is_dir() else None
    if audit is not None:
        report(audit)
    for note in verdict.notes:
        print(f"NOTE {note}")
    for problem in verdict.problems:
        print(f"PROBLEM {problem}")
    if verdict.clips == 0:
        print(f"NOT VERIFIED: no sealed clips ({SUFFIX}) found under {path}")
        return 6
    if audit is not None and not audit.ok:
        print(f"NOT VERIFIED: the audit log in {path / 'audit'} does not hold (see PROBLEM above).")
        return 6
    if verdict.ok:
        checked = " and every file the manifest lists" if listing is not None else ""
        print(f"VERIFIED: {verdict.clips} clip(s) from {verdict.devices} device(s); every signature, content "
              f"trailer and chain link holds{checked}, no gaps.")
        return 0
    print(f"NOT VERIFIED: {len(verdict.problems)} problem(s) in {verdict.clips} clip(s).")
    return 6
