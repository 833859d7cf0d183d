"""``cryospy verify PATH``: check sealed clips offline, with no decryption key.

PATH is one sealed file or a folder (an evidence export, or any copy of the bucket's ``clips/``). The
devices' public verify keys come from ``--devices FILE`` or the folder's ``manifest.json`` (``{"devices":
{"<id>": "cs1-ed25519-pub:…"}}``). For every clip the header signature and the device-signed content trailer
are checked; then each device's chain: sequence gaps (with the time span missing), reordering, replays,
broken links. The verdict is printed last; the exit code is 0 only when everything holds.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cryospy.common.chain import ChainProblem, verify_chain
from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import verify_key_from_text
from cryospy.common.sealed import (
    SealedFormatError,
    SealedHeader,
    read_header,
    verify_content,
    verify_header_signature,
)

SUFFIX = ".cse"


class VerifyUsageError(CryoSpyError):
    exit_code = 2


@dataclass(frozen=True)
class Verdict:
    clips: int
    devices: int
    problems: list[ChainProblem]

    @property
    def ok(self) -> bool:
        return not self.problems and self.clips > 0


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
        return {str(k): verify_key_from_text(v) for k, v in devices.items()}
    except CryoSpyError as exc:
        raise VerifyUsageError(f"{path}: {exc}") from None


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
                progress: Callable[[int, int], None] = lambda done, total: None) -> Verdict:
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
    return Verdict(len(clips), len({h.device_id for _, h in headers}), problems)


def run(path: Path, devices_file: Path | None) -> int:
    if devices_file is None:
        manifest = (path if path.is_dir() else path.parent) / "manifest.json"
        if not manifest.exists():
            raise VerifyUsageError("no device keys: pass --devices FILE, or verify a folder with a manifest.json "
                                   "(exports include one)")
        devices_file = manifest
    keys = load_device_keys(devices_file)
    started = last = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if total > 20 and (now - last > 1.0 or done == total):
            print(f"  checked {done}/{total} clips ({now - started:.0f}s)", file=sys.stderr, flush=True)
            last = now

    verdict = verify_path(path, keys, progress)
    for problem in verdict.problems:
        print(f"PROBLEM {problem}")
    if verdict.clips == 0:
        print(f"NOT VERIFIED: no sealed clips ({SUFFIX}) found under {path}")
        return 6
    if verdict.ok:
        print(f"VERIFIED: {verdict.clips} clip(s) from {verdict.devices} device(s); every signature, content "
              "trailer and chain link holds, no gaps.")
        return 0
    print(f"NOT VERIFIED: {len(verdict.problems)} problem(s) in {verdict.clips} clip(s).")
    return 6
