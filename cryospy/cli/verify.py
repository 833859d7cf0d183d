"""``cryospy verify PATH``: check sealed clips offline, with no decryption key, and print the verdict.

The checks are :mod:`cryospy.common.evidence`; this module finds the device keys (``--devices FILE`` or the
folder's ``manifest.json``), prints every key's fingerprint (compare it with the one recorded at enrolment:
a manifest comes from the server that exported it), progress for long runs, each note and problem, and the
verdict last. An export's ``audit/`` folder (the audit log) is checked too (:mod:`.verify_audit`). The exit code
is 0 only when everything holds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cryospy.cli.verify_audit import report, verify_audit
from cryospy.common.evidence import (
    MANIFEST,
    SUFFIX,
    ExportListing,
    VerifyUsageError,
    camera_names,
    load_device_keys,
    verify_path,
)
from cryospy.common.keys import verify_key_fingerprint


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
