"""MinIO's drives: the layout `cryospy setup --drive` accepts, and their health as MinIO reports it.

Several drives make MinIO erasure-code every object across them (data + parity shards): with the default
parity for 4 drives (EC:2) any two drives can be lost without losing an object, and writes go on while at
least three are online. A drive that comes back empty (a replaced disk, a wiped folder) is formatted and
healed by MinIO itself within seconds; :func:`drive_report` shows that on the status page.

MinIO refuses drives on the system's root disk in erasure mode (they would protect nothing if that disk
died) and says only "drive not found". ``--drives-share-disk`` is the explicit opt-in for trying the layout
on one disk; it protects against a wiped folder, not a dead disk.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .bootstrap import minio_admin
from .deployment import Deployment
from .errors import InfraError

log = logging.getLogger(__name__)

MIN_DRIVES = 1     # one drive elsewhere than the data dir (no parity); erasure coding starts at 2
MAX_DRIVES = 16    # one erasure set; more drives are a layout for a MinIO cluster of its own (docs/scale-out.md)


def default_parity(drives: int) -> int:
    """MinIO's own default (``storageclass.DefaultParityBlocks``) for a set of this many drives."""
    if drives <= 1:
        return 0
    if drives <= 3:
        return 1
    if drives <= 5:
        return 2
    if drives <= 7:
        return 3
    return 4


def check_layout(drives: list[str], parity: int, share_disk: bool) -> tuple[str, ...]:
    """Validate ``--drive``/``--parity`` at setup and create the drive folders (0700); returns absolute paths.

    Drives must be distinct absolute folders, 1-16 of them, and (from 2 on, where MinIO erasure-codes) on
    different disks from each other and from the system unless ``share_disk`` says the operator knows they
    are not."""
    if not drives:
        if parity:
            raise InfraError("--parity needs several --drive folders (MinIO's single-drive mode has no parity)")
        return ()
    paths = [Path(d) for d in drives]
    relative = [str(p) for p in paths if not p.is_absolute()]
    if relative:
        raise InfraError(f"--drive needs absolute paths (one per disk, e.g. /mnt/disk1); got {relative}")
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise InfraError("the same --drive folder is named twice; give each disk once")
    if not MIN_DRIVES <= len(paths) <= MAX_DRIVES:
        raise InfraError(f"MinIO erasure-codes across 2 to {MAX_DRIVES} drives on one server; got "
                         f"{len(paths)}. For more, run a MinIO cluster and point CryoSpy at it (--external-minio; "
                         "docs/scale-out.md).")
    if parity and not 1 <= parity <= len(paths) // 2:
        raise InfraError(f"--parity {parity} is not possible with {len(paths)} drive(s): MinIO allows 1 to "
                         f"{len(paths) // 2} (the default, {default_parity(len(paths))}, survives losing "
                         f"{default_parity(len(paths))} drives)")
    for path in paths:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(path, 0o700)
        except OSError as exc:
            raise InfraError(f"cannot create the drive folder {path}: {exc.strerror}. Mount the disk there (or "
                             "create the folder) and make it writable by the user who runs cryospy.") from None
    if len(paths) > 1 and not share_disk:
        devices: dict[int, list[str]] = {}
        for path in paths:
            devices.setdefault(path.stat().st_dev, []).append(str(path))
        root = Path("/").stat().st_dev
        shared = [group for group in devices.values() if len(group) > 1]
        on_root = devices.get(root, [])
        if shared or on_root:
            what = (f"{', '.join(shared[0])} are on one disk" if shared
                    else f"{', '.join(on_root)} {'is' if len(on_root) == 1 else 'are'} on the system disk")
            raise InfraError(
                f"{what}: if that disk dies, every drive on it goes with it, and MinIO refuses drives on the "
                "system disk. Mount one disk per --drive, or pass --drives-share-disk to accept a layout that "
                "survives a wiped folder but not a dead disk (for trying it out).")
    return tuple(str(p) for p in paths)


# -- health, as MinIO's admin API reports it --------------------------------------------------------------

@dataclass(frozen=True)
class HealProgress:
    """MinIO's healing tracker for one drive (``heal_info`` in the admin server info)."""
    finished: bool
    objects_healed: int
    objects_failed: int
    bytes_done: int
    current_bucket: str
    started: str


@dataclass(frozen=True)
class Drive:
    node: str             # the MinIO server that has the drive (host:port)
    path: str
    state: str            # MinIO's word: ok, offline, unformatted, faulty, …
    used_bytes: int
    total_bytes: int
    healing: bool
    heal: HealProgress | None

    @property
    def online(self) -> bool:
        return self.state == "ok"

    @property
    def label(self) -> str:
        """What the status page says about the drive."""
        if self.healing:
            return "healing"
        if self.state == "ok":
            return "online"
        if self.state == "unformatted":
            return "empty (new or wiped): healing starts shortly"
        return self.state


@dataclass(frozen=True)
class DriveReport:
    """Every drive of the MinIO the deployment uses, or why that could not be asked."""
    drives: tuple[Drive, ...] = ()
    parity: int = 0
    nodes_offline: tuple[str, ...] = ()
    error: str = ""

    @property
    def online(self) -> int:
        return sum(d.online for d in self.drives)

    @property
    def attention(self) -> bool:
        return bool(self.error or self.nodes_offline or any(not d.online or d.healing for d in self.drives))


def parse_server_info(doc: dict[str, object]) -> DriveReport:
    """The parts of MinIO's admin ``info`` answer the status page shows (tolerant of missing fields)."""
    drives: list[Drive] = []
    offline: list[str] = []
    for server in doc.get("servers") or []:   # type: ignore[union-attr]
        node = str(server.get("endpoint", ""))
        if server.get("state") not in (None, "online"):
            offline.append(node)
        for d in server.get("drives") or []:
            info = d.get("heal_info") or None
            heal = None if info is None else HealProgress(
                bool(info.get("finished")), int(info.get("objects_healed") or 0),
                int(info.get("objects_failed") or 0), int(info.get("bytes_done") or 0),
                str(info.get("current_bucket") or ""), str(info.get("started") or ""))
            drives.append(Drive(node, str(d.get("path") or d.get("endpoint") or ""), str(d.get("state") or "unknown"),
                                int(d.get("usedspace") or 0), int(d.get("totalspace") or 0),
                                bool(d.get("healing")), heal))
    backend = doc.get("backend") or {}
    parity = int(backend.get("standardSCParity") or 0) if isinstance(backend, dict) else 0
    return DriveReport(tuple(drives), parity, tuple(offline))


def drive_report(dep: Deployment) -> DriveReport:
    """Ask MinIO (as root, through the deployment's one address) for its drives; never raises."""
    try:
        return parse_server_info(json.loads(minio_admin(dep, retries=False).info()))
    except Exception as exc:   # the page must render whatever MinIO does; the reason is shown, not hidden
        log.info("MinIO admin info failed: %s", exc)
        return DriveReport(error=f"{type(exc).__name__}: {exc}")
